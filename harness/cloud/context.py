"""The pieces of one offline cloud that its parts share: state layout, registry, root CA, settings.

Provisioning, deployments, discovery and the CLI all take a ``CloudContext`` instead of importing each
other, which keeps each module about one thing and lets tests build a context around a temporary dir.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol

from harness.cloud.ca import CertificateAuthority
from harness.cloud.credentials import CredentialFactory
from harness.cloud.layout import StateLayout
from harness.cloud.registry import Registry
from harness.cloud.templates import BUILTIN_TEMPLATES, ProvisioningTemplate
from harness.cloud.validation import fail

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "123456789012"


class Deployer(Protocol):
    """Applies a component-template version to a core; returns IN_PROGRESS, SUCCEEDED or FAILED."""

    def __call__(
        self, core_name: str, template_name: str, version: int, components: list[dict[str, object]]
    ) -> str: ...


@dataclass
class CloudContext:
    layout: StateLayout
    registry: Registry
    root_ca: CertificateAuthority
    credentials: CredentialFactory
    region: str = DEFAULT_REGION
    account_id: str = DEFAULT_ACCOUNT_ID
    fsync: bool = False
    deployer: Deployer | None = None
    _templates: dict[str, tuple[str, ProvisioningTemplate]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def thing_arn(self, name: str) -> str:
        return f"arn:aws:iot:{self.region}:{self.account_id}:thing/{name}"

    def template(
        self, name: str, source: str | None = None, path: str = "provisioningTemplate"
    ) -> ProvisioningTemplate:
        """A registered provisioning template (parsed once per stored version) or a built-in one."""
        stored = self.registry.provisioning_template(name)
        if stored is None:
            if name in BUILTIN_TEMPLATES:
                return ProvisioningTemplate.builtin(name)
            known = sorted(set(self.registry.provisioning_template_names()) | set(BUILTIN_TEMPLATES))
            fail(source, path, f"no provisioning template named {name!r}", known)
        body, template_source = stored
        key = repr(sorted(body.items()))
        with self._lock:
            cached = self._templates.get(name)
            if cached is not None and cached[0] == key:
                return cached[1]
        parsed = ProvisioningTemplate.parse(body, name, source=template_source)
        with self._lock:
            self._templates[name] = (key, parsed)
        return parsed
