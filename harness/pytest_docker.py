"""pytest fixtures for the Docker application deployment connector (scenarios/docker).

``docker_edge`` is the docker suite's core on the profile's target (reference core + connector + private
podman + compose file store), one per profile per session, reset before every scenario; ``status_observer``
is a real MQTT client subscribed to the connector's status topic through the core's broker;
``--docker-fault NAME`` (or ``HARNESS_DOCKER_FAULTS``) starts the connector with a seeded defect.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from harness.docker.faults import FAULTS, check_faults
from harness.errors import HarnessError
from harness.profiles import DeviceProfile


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness")
    group.addoption(
        "--docker-fault",
        action="append",
        default=[],
        dest="harness_docker_faults",
        help="start the Docker connector with this seeded defect (repeatable): " + ", ".join(FAULTS),
    )


def pytest_configure(config: pytest.Config) -> None:
    try:
        check_faults(config.getoption("harness_docker_faults") or [])
    except HarnessError as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.fixture(scope="session")
def docker_faults(pytestconfig: pytest.Config) -> frozenset[str]:
    given = list(pytestconfig.getoption("harness_docker_faults") or [])
    given += [f for f in os.environ.get("HARNESS_DOCKER_FAULTS", "").split(",") if f]
    try:
        return check_faults(given)
    except HarnessError as exc:
        raise pytest.UsageError(str(exc)) from None


class DockerPool:
    """Docker edges of this session, one per profile, built on first use and closed at the end."""

    def __init__(self, cloud: object, target_pool: object, faults: frozenset[str]) -> None:
        self.cloud, self.target_pool, self.faults = cloud, target_pool, faults
        self.edges: dict[str, object] = {}
        self.broken: dict[str, str] = {}

    def get(self, profile: DeviceProfile) -> object:
        from harness.docker.edge import DockerEdge
        from harness.pytest_plugin import TargetPool, TargetUnavailable

        assert isinstance(self.target_pool, TargetPool)
        if profile.name in self.broken:
            raise TargetUnavailable(self.broken[profile.name])
        if profile.name not in self.edges:
            got = self.target_pool.try_get(profile.name)
            if isinstance(got, HarnessError):
                self.broken[profile.name] = f"target {profile.name} could not be powered on: {got}"
                raise TargetUnavailable(self.broken[profile.name])
            try:
                self.edges[profile.name] = DockerEdge(got, profile, self.cloud, faults=self.faults)
            except HarnessError as exc:
                self.broken[profile.name] = (
                    f"the docker suite's core could not start on {profile.name}: {exc}"
                )
                raise TargetUnavailable(self.broken[profile.name]) from None
        return self.edges[profile.name]

    def close(self) -> None:
        from harness.docker.edge import DockerEdge

        while self.edges:
            _, edge = self.edges.popitem()
            assert isinstance(edge, DockerEdge)
            edge.close()


@pytest.fixture(scope="session")
def docker_pool(cloud: object, target_pool: object, docker_faults: frozenset[str]) -> Iterator[DockerPool]:
    pool = DockerPool(cloud, target_pool, docker_faults)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def docker_edge(profile: DeviceProfile, docker_pool: DockerPool, request: pytest.FixtureRequest) -> object:
    """The docker suite's core on this profile's target, reset: no containers, store online, core running."""
    from harness.docker.edge import DockerEdge
    from harness.pytest_plugin import TargetUnavailable

    try:
        edge = docker_pool.get(profile)
    except TargetUnavailable:
        request.node.user_properties.append(("harness_infra", "1"))
        raise
    assert isinstance(edge, DockerEdge)
    edge.reset()
    return edge


@pytest.fixture
def status_observer(docker_edge: object) -> Iterator[object]:
    """A real MQTT client (mutual TLS) subscribed to the connector's status topic on the core's broker."""
    from harness.clients.mqtt import MqttDevice
    from harness.docker.edge import DockerEdge
    from harness.docker.status import STATUS_TOPIC

    assert isinstance(docker_edge, DockerEdge)
    ep = docker_edge.core.endpoints()[0]
    client = MqttDevice(docker_edge.ids.observer, docker_edge.creds(docker_edge.ids.observer))
    res = client.connect(ep.host, ep.port)
    if not res.connected:
        client.close()
        raise HarnessError(
            f"the status observer could not connect to {ep.host}:{ep.port}: {res.reason} {res.error}"
        )
    granted = client.subscribe(STATUS_TOPIC, qos=1)
    if granted not in (0, 1):
        client.close()
        raise HarnessError(
            f"the core's broker refused the observer's subscription to {STATUS_TOPIC} ({granted})"
        )
    try:
        yield client
    finally:
        client.close()
