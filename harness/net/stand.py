"""A network stand: the topology, a profile's target inside the core's namespace, the cloud endpoint on the
cloud link and the reference core bridged to it - torn down in reverse, also on failure and Ctrl-C.

Used by the network scenarios' fixtures and by ``bench/bench_network.py``; the lead's ``harness load
--impair`` wiring uses the same pieces (see the README section in notes/network.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from harness.cloud.api import Cloud
from harness.errors import InfraError, TargetError, run_teardown
from harness.net.cloud_link import CloudBroker, CloudLinkedCore
from harness.net.control import NetControl
from harness.net.topology import Topology
from harness.profiles import DeviceProfile


@dataclass
class NetworkStand:
    """Everything behind the links for one core; ``cloud`` must already hold the provisioned core."""

    profile: DeviceProfile
    cloud: Cloud
    core_name: str
    faults: Iterable[str] = ()
    net_faults: Iterable[str] = ()
    base: Path | None = None
    progress: Callable[[str], None] = field(default=lambda _m: None)

    def __post_init__(self) -> None:
        self.topology: Topology | None = None
        self.control: NetControl | None = None
        self.target: object | None = None
        self.cloud_broker: CloudBroker | None = None
        self.core: CloudLinkedCore | None = None

    def __enter__(self) -> NetworkStand:
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
        from harness.targets.qemu_user import QemuUserTarget

        if self.profile.transport != "qemu-user":
            raise TargetError(
                f"{self.profile.name}: network scenarios put the target in a network namespace; "
                f"transport {self.profile.transport!r} cannot be (allowed: qemu-user)"
            )
        self.topology = Topology(self.base)
        self.topology.create()
        self.control = NetControl(self.topology)
        fleet, cloud_link = self.topology.link("fleet"), self.topology.link("cloud")
        self.progress(f"net: namespace {self.topology.netns}, core at {fleet.core_addr}")
        self.cloud_broker = CloudBroker(self.cloud, cloud_link.host_addr)
        self.cloud_broker.start()
        target = QemuUserTarget(
            self.profile, instance=f"net-{self.profile.name}", netns=self.topology.netns_path
        )
        self.target = target
        target.power_on()
        self.core = CloudLinkedCore(
            target,
            self.profile,
            self.cloud,
            self.core_name,
            cloud_broker=self.cloud_broker,
            host=fleet.core_addr,
            extra_hosts=[cloud_link.core_addr],
            faults=self.faults,
            net_faults=self.net_faults,
        )
        self.core.install()
        self.core.start()

    def reset_network(self) -> None:
        """Heal every partition and clear every impairment (between scenarios)."""
        if self.control is not None:
            for link in list(self.control.cut_links):
                self.control.heal(link)
            for link in list(self.control.impaired):
                self.control.clear(link)

    def close(self) -> None:
        """Stop everything in reverse; keeps going past errors and reports the first."""
        from harness.targets.qemu_user import QemuUserTarget

        steps: list[tuple[str, Callable[[], None]]] = []
        if self.core is not None:
            steps.append(("core", self.core.close))
        if isinstance(self.target, QemuUserTarget):
            steps.append(("target", self.target.close))
        if self.cloud_broker is not None:
            steps.append(("cloud endpoint", self.cloud_broker.stop))
        if self.control is not None:
            steps.append(("network control", self.control.close))
        if self.topology is not None:
            steps.append(("topology", self.topology.close))
        errors = run_teardown(steps)
        self.core = self.target = self.cloud_broker = self.control = self.topology = None  # type: ignore[assignment]
        if errors:
            raise InfraError("network stand teardown: " + "; ".join(errors))
