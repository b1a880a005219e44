"""pytest fixtures for scenarios that need a running core and its cloud side.

``cloud`` is the offline cloud (CA, registry, discovery endpoint) of this session; ``core`` is the core under
test on a profile's target, provisioned with a small fleet of client devices and a device-group policy;
``--core-fault`` starts the reference core with a seeded defect. Scenarios reach the core only through the
``Core`` interface and the network.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.clients.mqtt import Credentials
from harness.cloud.discovery import FAULTS as DISCOVERY_FAULTS
from harness.cloud.templates import DEFAULT_DEVICE_TEMPLATE
from harness.core.base import Core
from harness.core.reference import FAULTS
from harness.errors import HarnessError, InputError
from harness.paths import FIXTURES_DIR
from harness.profiles import DeviceProfile

SCENARIO_POLICY = FIXTURES_DIR / "policies" / "relay-scenarios.json"
SENSORS = 4


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness")
    group.addoption(
        "--cloud-fault",
        action="append",
        default=[],
        dest="harness_cloud_faults",
        help="start the discovery endpoint with this seeded defect (repeatable): "
        + ", ".join(DISCOVERY_FAULTS),
    )
    group.addoption(
        "--core-fault",
        action="append",
        default=[],
        dest="harness_core_faults",
        help="start the reference core with this seeded defect (repeatable): " + ", ".join(FAULTS),
    )


def pytest_configure(config: pytest.Config) -> None:
    """Reject an unknown fault flag before anything runs (pytest usage error)."""
    from harness.core.reference import check_faults

    try:
        check_faults(config.getoption("harness_core_faults") or [])
        unknown = sorted(set(config.getoption("harness_cloud_faults") or []) - set(DISCOVERY_FAULTS))
        if unknown:
            raise InputError(
                f"unknown discovery fault(s) {', '.join(unknown)}; allowed: {', '.join(DISCOVERY_FAULTS)}"
            )
    except HarnessError as exc:
        raise pytest.UsageError(str(exc)) from None


@dataclass
class Fleet:
    """The client devices provisioned for a core's scenarios, by role."""

    core: str
    sensors: list[str]
    observer: str
    restricted: str
    lonely: str  # provisioned, associated with no core
    revoked: str  # associated, certificate revoked

    def prefix(self) -> str:
        return self.core


@dataclass
class CoreUnderTest:
    """What scenarios get: the core, its fleet, and how to present each device."""

    core: Core
    fleet: Fleet
    cloud: object
    core_ca_pem: str

    def creds(self, thing: str, *, with_cert: bool = True) -> Credentials:
        from harness.cloud.api import Cloud

        assert isinstance(self.cloud, Cloud)
        files = self.cloud.device_files(thing)
        if not with_cert:
            return Credentials(ca_pem=self.core_ca_pem)
        return Credentials(ca_pem=self.core_ca_pem, cert_path=files.cert_path, key_path=files.key_path)


def _core_name(profile: DeviceProfile) -> str:
    return "core-" + re.sub(r"[^A-Za-z0-9-]", "-", profile.name)


@pytest.fixture(scope="session")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The offline cloud side of this session (its own CA and registry)."""
    from harness.cloud.api import Cloud

    c = Cloud(tmp_path_factory.mktemp("cloud-state"))
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="session")
def discovery(cloud: object, pytestconfig: pytest.Config) -> Iterator[object]:
    """The discovery endpoint (HTTPS, mutual TLS) on loopback, on a free port."""
    from harness.cloud.api import Cloud

    assert isinstance(cloud, Cloud)
    server = cloud.discovery_server(port=0, faults=pytestconfig.getoption("harness_cloud_faults") or [])
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def core_faults(pytestconfig: pytest.Config) -> frozenset[str]:
    from harness.core.reference import check_faults

    given = list(pytestconfig.getoption("harness_core_faults") or [])
    given += [f for f in os.environ.get("HARNESS_CORE_FAULTS", "").split(",") if f]
    try:
        return check_faults(given)
    except HarnessError as exc:
        raise pytest.UsageError(str(exc)) from None


def provision_fleet(cloud: object, core: str) -> Fleet:
    from harness.cloud.api import Cloud

    assert isinstance(cloud, Cloud)
    cloud.provision_core(core)
    fleet = Fleet(
        core=core,
        sensors=[],
        observer=f"{core}-observer",
        restricted=f"{core}-restricted",
        lonely=f"{core}-lonely",
        revoked=f"{core}-revoked",
    )
    task = cloud.provision_devices(core, SENSORS, f"{core}-dev-", timeout=300)
    assert task["taskStatus"] == "Success", task
    fleet.sensors = sorted(d for d in cloud.devices(core) if d.startswith(f"{core}-dev-"))
    for name in (fleet.observer, fleet.restricted, fleet.lonely, fleet.revoked):
        _provision_one(cloud, core, name)
    cloud.disassociate(core, [fleet.lonely])
    cloud.revoke(fleet.revoked)
    policy = json.loads(SCENARIO_POLICY.read_text().replace("SCENARIO", core))
    cloud.set_client_policy(core, policy, source=str(SCENARIO_POLICY))
    return fleet


def _provision_one(cloud: object, core: str, name: str) -> None:
    """A device with an exact name: a device task of one, named by its number-free prefix."""
    from harness.cloud.api import Cloud

    assert isinstance(cloud, Cloud)
    body = {
        "type": "Create",
        "devices": [
            {
                "name": name,
                "provisioningTemplate": DEFAULT_DEVICE_TEMPLATE,
                "cdfProvisioningParameters": {"keyType": "ec"},
            }
        ],
    }
    task = cloud.wait_task(cloud.submit_device_task(core, body), 120)
    assert task["taskStatus"] == "Success", task


class CorePool:
    """Cores of this session, one per profile, started on first use and stopped at the end.

    A pool rather than a parametrized session fixture: pytest may tear such a fixture down and build it
    again when test parameters interleave, and a core (its things, its certificates) must exist once.
    """

    def __init__(self, cloud: object, target_pool: object, faults: frozenset[str]) -> None:
        self.cloud = cloud
        self.target_pool = target_pool
        self.faults = faults
        self.cores: dict[str, CoreUnderTest] = {}
        self.broken: dict[str, str] = {}

    def get(self, profile: DeviceProfile) -> CoreUnderTest:
        from harness.cloud.api import Cloud
        from harness.core.reference import ReferenceCore
        from harness.pytest_plugin import TargetPool, TargetUnavailable

        assert isinstance(self.target_pool, TargetPool) and isinstance(self.cloud, Cloud)
        if profile.name in self.broken:
            raise TargetUnavailable(self.broken[profile.name])
        if profile.name in self.cores:
            return self.cores[profile.name]
        got = self.target_pool.try_get(profile.name)
        if isinstance(got, HarnessError):
            self.broken[profile.name] = f"target {profile.name} could not be powered on: {got}"
            raise TargetUnavailable(self.broken[profile.name])
        name = _core_name(profile)
        fleet = provision_fleet(self.cloud, name)
        core = ReferenceCore(got, profile, self.cloud, name, faults=self.faults)
        try:
            core.install()
            core.start()
        except HarnessError as exc:
            core.close()
            self.broken[profile.name] = f"core {name} could not be started on {profile.name}: {exc}"
            raise TargetUnavailable(self.broken[profile.name]) from None
        cut = CoreUnderTest(
            core=core, fleet=fleet, cloud=self.cloud, core_ca_pem=self.cloud.core_ca(name).pem
        )
        self.cores[profile.name] = cut
        return cut

    def close(self) -> None:
        while self.cores:
            _, cut = self.cores.popitem()
            cut.core.close()


@pytest.fixture(scope="session")
def core_pool(cloud: object, target_pool: object, core_faults: frozenset[str]) -> Iterator[CorePool]:
    pool = CorePool(cloud, target_pool, core_faults)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def core_under_test(
    profile: DeviceProfile, core_pool: CorePool, request: pytest.FixtureRequest
) -> CoreUnderTest:
    """The reference core on this profile's target, started, with its fleet provisioned."""
    from harness.pytest_plugin import TargetUnavailable

    try:
        return core_pool.get(profile)
    except TargetUnavailable:
        request.node.user_properties.append(("harness_infra", "1"))
        raise


def foreign_device_files(thing: str, directory: Path) -> tuple[Path, Path]:
    """A device certificate for ``thing`` from a CA nobody trusts (key 0600), for refusal scenarios."""
    from harness.cloud.ca import CertificateAuthority, CertInfo, cert_to_pem, key_to_pem

    foreign = CertificateAuthority.create("foreign CA")
    key, cert = foreign.issue_key_and_cert(
        CertInfo(common_name=thing).subject(), key_type="ec", days=1, usage="client"
    )
    cert_path, key_path = directory / f"{thing}-foreign.pem", directory / f"{thing}-foreign.key"
    key_path.touch(mode=0o600)
    key_path.write_bytes(key_to_pem(key))
    cert_path.write_bytes(cert_to_pem(cert))
    return cert_path, key_path


def core_log_tail(core: Core, lines: int = 30) -> str:
    return "\n".join(core.logs().splitlines()[-lines:])


__all__ = ["CoreUnderTest", "Fleet", "core_log_tail", "foreign_device_files"]
