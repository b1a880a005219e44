"""Where the offline cloud keeps its state, so a run can be inspected by hand and resumed.

::

    <state>/registry.db            things, certificates, policies, cores, tasks (SQLite, WAL)
    <state>/ca/root-ca.pem, .key   the root CA (signs device certificates and the discovery server)
    <state>/ca/discovery/          the discovery endpoint's server certificate
    <state>/things/<name>/         cert.pem and key.pem (0600) of every core and client device
    <state>/cores/<name>/          ca.pem, ca.key (0600), installerConfig.yml, server/ (broker certificate)
    <state>/locks/                 one lock file per running task, so two processes never run the same task
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harness.cloud.validation import THING_NAME_RE
from harness.errors import InputError

DEFAULT_STATE_DIR = "./.harness-state"
STATE_ENV = "HARNESS_CLOUD_STATE"


def default_state_dir() -> Path:
    return Path(os.environ.get(STATE_ENV, DEFAULT_STATE_DIR))


@dataclass(frozen=True)
class StateLayout:
    """Paths inside one state directory; pure path arithmetic, creates nothing."""

    root: Path

    @property
    def db(self) -> Path:
        return self.root / "registry.db"

    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def root_ca_cert(self) -> Path:
        return self.ca_dir / "root-ca.pem"

    @property
    def root_ca_key(self) -> Path:
        return self.ca_dir / "root-ca.key"

    @property
    def crl(self) -> Path:
        return self.ca_dir / "root-ca.crl.pem"

    @property
    def discovery_dir(self) -> Path:
        return self.ca_dir / "discovery"

    @property
    def locks_dir(self) -> Path:
        return self.root / "locks"

    @property
    def things_dir(self) -> Path:
        return self.root / "things"

    @property
    def cores_dir(self) -> Path:
        return self.root / "cores"

    def thing_dir(self, name: str) -> Path:
        return self.things_dir / _safe(name)

    def thing_cert(self, name: str) -> Path:
        return self.thing_dir(name) / "cert.pem"

    def thing_key(self, name: str) -> Path:
        return self.thing_dir(name) / "key.pem"

    def core_dir(self, name: str) -> Path:
        return self.cores_dir / _safe(name)

    def core_ca_cert(self, name: str) -> Path:
        return self.core_dir(name) / "ca.pem"

    def core_ca_key(self, name: str) -> Path:
        return self.core_dir(name) / "ca.key"

    def core_config(self, name: str) -> Path:
        return self.core_dir(name) / "installerConfig.yml"

    def core_server_dir(self, name: str) -> Path:
        return self.core_dir(name) / "server"


def _safe(name: str) -> str:
    """Thing names become directory names; the AWS name rule already excludes '/', '.' and '..'."""
    if not THING_NAME_RE.match(name):
        raise InputError(f"invalid thing name {name!r}: 1-128 characters of a-z A-Z 0-9 : _ -")
    return name
