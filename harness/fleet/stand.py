"""A load stand: a profile's target powered on, a fresh offline cloud with a core and N client devices, the
discovery endpoint and the reference core running - everything a load run needs, torn down in reverse.

Used by ``harness load``, the fleet benchmark and the fleet's own tests, so all three measure the same setup.
"""

from __future__ import annotations

import json
import resource
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from harness.cloud.api import Cloud
from harness.core.reference import ReferenceCore
from harness.errors import InfraError, run_teardown
from harness.fleet.plan import BrokerEndpoint, DiscoveryEndpoint, Identity
from harness.paths import FIXTURES_DIR
from harness.profiles import DeviceProfile
from harness.targets.base import Target

if TYPE_CHECKING:
    from harness.net.impair import Impairment
    from harness.net.stand import NetworkStand

#: The relay scenarios' policy: ``<core>-dev-*`` may publish ``relay/*`` and subscribe ``relay/#``.
POLICY = FIXTURES_DIR / "policies" / "relay-scenarios.json"
DEFAULT_CORE = "load-core"


def raise_fd_limit(needed: int) -> int:
    """Raise this process's open-file limit (inherited by targets it powers on, so by their broker).

    Each device holds one socket here and one in the broker; Debian's default soft limit of 1024 caps a
    fleet at about a thousand devices. Returns the soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, needed)) if hard != resource.RLIM_INFINITY else max(soft, needed)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def client_policy(core: str) -> dict[str, object]:
    doc: dict[str, object] = json.loads(POLICY.read_text().replace("SCENARIO", core))
    return doc


def provision_load_devices(cloud: Cloud, core: str, count: int, prefix: str | None = None) -> list[Identity]:
    """``count`` devices ``<core>-dev-load-NNNN`` (matched by the relay policy), made once and reused."""
    prefix = prefix or f"{core}-dev-load-"
    have = sorted(d for d in cloud.devices(core) if d.startswith(prefix))
    if len(have) < count:
        task = cloud.provision_devices(core, count - len(have), prefix, start=len(have), timeout=3600)
        if task["taskStatus"] != "Success":
            raise InfraError(f"provisioning {count} load devices for {core} failed: {task['summary']}")
        have = sorted(d for d in cloud.devices(core) if d.startswith(prefix))
    out = []
    for name in have[:count]:
        files = cloud.device_files(name)
        out.append(Identity(name, files.cert_path, files.key_path))
    return out


@dataclass
class LoadStand:
    """Target + cloud + core + discovery for one load run. Use as a context manager."""

    profile: DeviceProfile
    devices: int
    faults: Iterable[str] = ()
    core_name: str = DEFAULT_CORE
    state_dir: Path | None = None
    progress: Callable[[str], None] = field(default=lambda _m: None)
    #: Put the core behind a harness network namespace and impair its fleet link (``--impair``, issue #12).
    impair: Impairment | None = None

    def __post_init__(self) -> None:
        self.network: NetworkStand | None = None
        self.target: Target | None = None
        self.cloud: Cloud | None = None
        self.core: ReferenceCore | None = None
        self.identities: list[Identity] = []
        self._discovery: object | None = None
        self._own_state = False

    def __enter__(self) -> LoadStand:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        from harness.targets.factory import make_target

        limit = raise_fd_limit(2 * self.devices + 512)
        if limit < self.devices + 256:
            self.progress(f"load: warning: open-file limit {limit} may cap {self.devices} devices")
        if self.state_dir is None:
            self.state_dir = Path(tempfile.mkdtemp(prefix="load-cloud-", dir="/var/tmp"))
            self._own_state = True
        self.cloud = Cloud(self.state_dir)
        self.progress(f"load: provisioning core {self.core_name} and {self.devices} devices")
        self.cloud.provision_core(self.core_name)
        self.identities = provision_load_devices(self.cloud, self.core_name, self.devices)
        self.cloud.set_client_policy(self.core_name, client_policy(self.core_name), source=str(POLICY))
        self.progress(f"load: powering on {self.profile.name}")
        if self.impair is not None:
            self._start_networked(self.impair)
        else:
            self.target = make_target(self.profile)
            self.target.power_on()
            self.core = ReferenceCore(
                self.target, self.profile, self.cloud, self.core_name, faults=self.faults
            )
            self.core.install()
            self.core.start()
        server = self.cloud.discovery_server(port=0, workers=16, backlog=4096)
        server.start()
        self._discovery = server
        assert self.core is not None
        ep = self.core.endpoints()[0]
        self.progress(
            f"load: core {self.core_name} up on {ep.host}:{ep.port}"
            + (f" with fault(s) {', '.join(sorted(self.core.faults))}" if self.core.faults else "")
        )

    def _start_networked(self, impair: Impairment) -> None:
        """The core's target in a namespace of its own behind the fleet link, impaired as asked (the same
        stand the network scenarios use, so an impaired load and N1-N4 measure one setup)."""
        from harness.net.stand import NetworkStand

        assert self.cloud is not None
        self.network = NetworkStand(
            self.profile, self.cloud, self.core_name, faults=self.faults, progress=self.progress
        )
        self.network.start()
        self.core = self.network.core
        assert self.network.control is not None
        self.network.control.impair("fleet", impair)
        self.progress(f"load: fleet link impaired: {impair}")

    @property
    def discovery(self) -> DiscoveryEndpoint:
        from harness.cloud.discovery import DiscoveryServer

        assert isinstance(self._discovery, DiscoveryServer) and self.cloud is not None
        return DiscoveryEndpoint(self._discovery.host, self._discovery.port, str(self.cloud.root_ca_path))

    @property
    def broker(self) -> BrokerEndpoint:
        assert self.core is not None and self.cloud is not None
        ep = self.core.endpoints()[0]
        return BrokerEndpoint(ep.host, ep.port, self.cloud.core_ca(self.core_name).pem)

    def core_rss_mb(self) -> float | None:
        """The core broker's resident memory now, in MB (None while it is not running)."""
        from harness.fleet.memory import rss_mb_from_status

        core = self.core
        target = self.target or (self.network.target if self.network is not None else None)
        if core is None or not isinstance(target, Target):
            return None
        pid = (target.read_text(core.pidfile) or "").strip()
        if not pid.isdigit():
            return None
        res = target.run(["cat", f"/proc/{pid}/status"], timeout=30)
        return rss_mb_from_status(res.stdout) if res.ok else None

    def revoke(self, count: int) -> list[str]:
        """Seeded defect: revoke the certificates of ``count`` devices spread evenly over the fleet (the
        discovery endpoint then closes their connections unanswered, so they can never find the core)."""
        assert self.cloud is not None
        n = len(self.identities)
        # centred in each of ``count`` equal slices, so device 0 (often a subscriber) is spared
        picked = sorted({self.identities[(2 * k + 1) * n // (2 * count)].thing for k in range(count)})
        for thing in picked:
            self.cloud.revoke(thing)
        return picked

    def storm(self, kind: str) -> Callable[[], None]:
        """The blocking core operation of an L3 storm."""
        core = self.core
        assert core is not None
        if kind == "rotate":
            return core.rotate_certificate

        def restart() -> None:
            core.stop()
            core.start()

        return restart

    def close(self) -> None:
        """Stop everything this stand started, in reverse; keeps going past errors and reports the first."""
        from harness.cloud.discovery import DiscoveryServer

        steps: list[tuple[str, Callable[[], None]]] = []
        if isinstance(self._discovery, DiscoveryServer):
            steps.append(("discovery endpoint", self._discovery.stop))
        if self.network is not None:
            steps.append(("network stand (core, target, links)", self.network.close))
        elif self.core is not None:
            steps.append(("core", self.core.close))
        if self.target is not None:
            steps.append(("target", self.target.close))
        if self.cloud is not None:
            steps.append(("cloud", self.cloud.close))
        errors = run_teardown(steps)
        self._discovery = self.core = self.target = self.cloud = self.network = None
        if self._own_state and self.state_dir is not None:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self.state_dir = None
        if errors:
            raise InfraError("load stand teardown: " + "; ".join(errors))
