"""pytest fixtures for network namespaces and impairment between fleet and core (scenarios/network).

``net_stand`` is the reference core of a profile inside a network namespace the harness creates, reached by
the fleet over the fleet link and bridged to the cloud endpoint over the cloud link (``harness.net.stand``),
with ``control`` to impair and cut either link; a scenario declares an impairment with
``@pytest.mark.net_impair("delay=20ms,jitter=5ms", link="fleet")``. One stand per profile per session
(like the core pool); every test starts with both links healed and unimpaired. ``--net-fault`` seeds a
defect in the core's network behaviour; ``--net-client-backoff`` is the reconnect policy of the scenario's
client devices.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from harness.clients.mqtt import Credentials
from harness.errors import HarnessError, InputError
from harness.fleet.backoff import BackoffPolicy
from harness.net.cloud_link import NET_FAULTS, check_net_faults
from harness.net.discovery_retry import CLIENT_FAULTS
from harness.net.impair import Impairment
from harness.profiles import DeviceProfile
from harness.records import TestRecord

DEFAULT_CLIENT_BACKOFF = "equal-jitter:0.25:2"
RECONNECT_CLIENTS = 10


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness")
    group.addoption(
        "--net-fault",
        action="append",
        default=[],
        dest="harness_net_faults",
        help="start the networked reference core with this seeded defect (repeatable): "
        + ", ".join(NET_FAULTS),
    )
    group.addoption(
        "--net-client-fault",
        action="append",
        default=[],
        dest="harness_net_client_faults",
        help="seeded defect of the network scenarios' client devices (repeatable): "
        + ", ".join(CLIENT_FAULTS),
    )
    group.addoption(
        "--net-client-backoff",
        default=DEFAULT_CLIENT_BACKOFF,
        dest="harness_net_client_backoff",
        help="reconnect policy of the network scenarios' client devices, NAME or NAME:BASE:CAP "
        f"(default {DEFAULT_CLIENT_BACKOFF})",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Reject an unknown fault or policy before anything runs (pytest usage error)."""
    config.addinivalue_line(
        "markers",
        "net_impair(spec, link='fleet'): the scenario runs with this impairment on a link of net_stand",
    )
    try:
        check_net_faults(config.getoption("harness_net_faults") or [])
        unknown = sorted(set(config.getoption("harness_net_client_faults") or []) - set(CLIENT_FAULTS))
        if unknown:
            raise InputError(f"--net-client-fault {', '.join(unknown)}: allowed: {', '.join(CLIENT_FAULTS)}")
        BackoffPolicy.parse(config.getoption("harness_net_client_backoff") or DEFAULT_CLIENT_BACKOFF)
    except HarnessError as exc:
        raise pytest.UsageError(str(exc)) from None


@dataclass
class NetUnderTest:
    """What network scenarios get: the stand (core, links, control), its devices and their credentials."""

    stand: object
    cloud: object
    sensors: list[str]
    reconnectors: list[str]
    client_backoff: BackoffPolicy
    client_faults: frozenset[str] = frozenset()
    #: Index of the current test's first network event (set by the ``net_stand`` fixture).
    first_event: int = 0

    @property
    def core(self) -> object:
        from harness.net.stand import NetworkStand

        assert isinstance(self.stand, NetworkStand)
        return self.stand.core

    def creds(self, thing: str, *, ca_pem: str | None = None) -> Credentials:
        from harness.cloud.api import Cloud
        from harness.net.stand import NetworkStand

        assert isinstance(self.cloud, Cloud) and isinstance(self.stand, NetworkStand)
        files = self.cloud.device_files(thing)
        assert self.stand.core is not None
        return Credentials(
            ca_pem=ca_pem or self.cloud.core_ca(self.stand.core.name).pem,
            cert_path=files.cert_path,
            key_path=files.key_path,
        )

    def cloud_creds(self, thing: str) -> Credentials:
        """A device's identity presented to the cloud endpoint (which it verifies by the endpoint CA)."""
        from harness.net.stand import NetworkStand

        assert isinstance(self.stand, NetworkStand) and self.stand.cloud_broker is not None
        return self.creds(thing, ca_pem=self.stand.cloud_broker.ca_path.read_text())


class NetStandPool:
    """Network stands of this session, one per profile, built on first use and torn down at the end."""

    def __init__(
        self,
        cloud: object,
        faults: frozenset[str],
        net_faults: frozenset[str],
        backoff: str,
        client_faults: frozenset[str] = frozenset(),
    ) -> None:
        self.client_faults = client_faults
        self.cloud = cloud
        self.faults = faults
        self.net_faults = net_faults
        self.backoff = BackoffPolicy.parse(backoff)
        self.stands: dict[str, NetUnderTest] = {}
        self.broken: dict[str, str] = {}

    def get(self, profile: DeviceProfile) -> NetUnderTest:
        from harness.cloud.api import Cloud
        from harness.net.stand import NetworkStand
        from harness.pytest_core import provision_fleet
        from harness.pytest_plugin import TargetUnavailable

        assert isinstance(self.cloud, Cloud)
        if profile.name in self.broken:
            raise TargetUnavailable(self.broken[profile.name])
        if profile.name in self.stands:
            return self.stands[profile.name]
        name = "net-" + re.sub(r"[^A-Za-z0-9-]", "-", profile.name)
        fleet = provision_fleet(self.cloud, name)
        task = self.cloud.provision_devices(name, RECONNECT_CLIENTS, f"{name}-dev-r", timeout=300)
        if task["taskStatus"] != "Success":
            raise TargetUnavailable(f"provisioning reconnect clients for {name} failed: {task['summary']}")
        reconnectors = sorted(d for d in self.cloud.devices(name) if d.startswith(f"{name}-dev-r"))
        stand = NetworkStand(profile, self.cloud, name, faults=self.faults, net_faults=self.net_faults)
        try:
            stand.start()
        except HarnessError as exc:
            stand.close()
            self.broken[profile.name] = f"network stand for {profile.name} could not be built: {exc}"
            raise TargetUnavailable(self.broken[profile.name]) from None
        sensors = [s for s in fleet.sensors if not s.startswith(f"{name}-dev-r")]
        nut = NetUnderTest(stand, self.cloud, sensors, reconnectors, self.backoff, self.client_faults)
        self.stands[profile.name] = nut
        return nut

    def close(self) -> None:
        from harness.net.stand import NetworkStand

        while self.stands:
            _, nut = self.stands.popitem()
            assert isinstance(nut.stand, NetworkStand)
            nut.stand.close()


@pytest.fixture(scope="session")
def net_pool(
    cloud: object, core_faults: frozenset[str], pytestconfig: pytest.Config
) -> Iterator[NetStandPool]:
    try:
        net_faults = check_net_faults(pytestconfig.getoption("harness_net_faults") or [])
    except InputError as exc:
        raise pytest.UsageError(str(exc)) from None
    pool = NetStandPool(
        cloud,
        core_faults,
        net_faults,
        pytestconfig.getoption("harness_net_client_backoff"),
        frozenset(pytestconfig.getoption("harness_net_client_faults") or []),
    )
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def net_stand(
    profile: DeviceProfile, net_pool: NetStandPool, request: pytest.FixtureRequest
) -> Iterator[NetUnderTest]:
    """The networked reference core of this profile, both links healed and unimpaired."""
    from harness.net.stand import NetworkStand
    from harness.pytest_plugin import TargetUnavailable

    if profile.transport != "qemu-user":
        pytest.skip(
            f"network scenarios need a qemu-user profile (the target joins a namespace); "
            f"{profile.name} is {profile.transport}"
        )
    try:
        nut = net_pool.get(profile)
    except TargetUnavailable:
        request.node.user_properties.append(("harness_infra", "1"))
        raise
    assert isinstance(nut.stand, NetworkStand)
    nut.stand.reset_network()
    first_event = len(nut.stand.control.events) if nut.stand.control else 0
    nut.first_event = first_event
    for marker in request.node.iter_markers("net_impair"):
        assert nut.stand.control is not None
        try:
            spec = Impairment.parse(str(marker.args[0]), source=f"{request.node.nodeid} net_impair")
            nut.stand.control.impair(str(marker.kwargs.get("link", "fleet")), spec)
        except InputError as exc:
            pytest.fail(str(exc), pytrace=False)
    yield nut
    if nut.stand.control is not None:
        request.node.user_properties.append(
            ("harness_net_events", json.dumps([e.to_json() for e in nut.stand.control.events[first_event:]]))
        )
    nut.stand.reset_network()


def net_record(
    record_result: Callable[[TestRecord], None],
    nut: NetUnderTest,
    profile: DeviceProfile,
    test_id: str,
    *,
    ok: bool,
    requirement: str,
    message: str,
    evidence: str,
) -> None:
    """The scenario's report row, with what the network did and when (backend, events) as properties."""
    from harness.net.stand import NetworkStand

    assert isinstance(nut.stand, NetworkStand) and nut.stand.control is not None
    control = nut.stand.control
    record_result(
        TestRecord(
            id=f"network.{test_id}",
            suite="network",
            profile=profile.name,
            outcome="passed" if ok else "failed",
            requirement=requirement,
            source="issue #12; scenarios.md network",
            evidence=evidence,
            message=message,
            properties={
                "net_backend": control.backend,
                "net_events": json.dumps([e.to_json() for e in control.events[nut.first_event :]]),
            },
        )
    )


__all__ = ["NetUnderTest", "net_record"]
