"""Docker application deployment scenarios DK1-DK5 (seed 003): the connector on the core.

Each scenario deploys connector parameters to the docker suite's core and judges only what is observable:
the status payloads a real MQTT client receives through the core's broker (mutual TLS), the containers the
engine runs (names, state, what they print), and the compose file stored on the core. Compose files come
from ``fixtures/docker/compose``; images are built from the profile's own root file system, so on an
emulated profile the containers run that architecture's code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from harness.clients.mqtt import MqttDevice
from harness.docker import status
from harness.docker.edge import DockerEdge
from harness.paths import FIXTURES_DIR
from harness.profiles import DeviceProfile

COMPOSE = FIXTURES_DIR / "docker" / "compose"
BUCKET = "gg-docker-apps"
PREFIX = status.PROJECT_PREFIX
#: Status payloads arrive right after the deployment call returns; the broker is local.
STATUS_TIMEOUT_S = 20.0
V1 = ("web", "worker")
V2 = ("api", "cache")


def upload(edge: DockerEdge, name: str, key: str | None = None) -> tuple[str, str]:
    """Put a fixture compose file into the store; returns (key, version)."""
    key = key or f"{name}.yml"
    return key, edge.store.put(BUCKET, key, (COMPOSE / f"{name}.yml").read_bytes())


def params(edge: DockerEdge, destination: str, key: str, version: str, **extra: str) -> dict[str, str]:
    """Connector parameters; the connector runs as the suite's Docker user (seed 003's recommendation)."""
    return {
        "DockerComposeFileS3Bucket": BUCKET,
        "DockerComposeFileS3Key": key,
        "DockerComposeFileS3Version": version,
        "DockerComposeFileDestinationPath": destination,
        "DockerUserId": edge.uid,
        **extra,
    }


def received(observer: MqttDevice, edge: DockerEdge) -> dict[str, object]:
    """The next status payload the observer received, parsed; fails naming what the connector logged."""
    got = observer.collect(1, STATUS_TIMEOUT_S)
    assert got, (
        f"no message on {status.STATUS_TOPIC} within {STATUS_TIMEOUT_S:g} s; "
        f"connector log:\n{edge.log_text()}"
    )
    assert got[0].topic == status.STATUS_TOPIC, f"message on {got[0].topic!r}, not {status.STATUS_TOPIC!r}"
    try:
        payload = json.loads(got[0].payload)
    except ValueError:
        pytest.fail(f"the status payload is not JSON: {got[0].payload[:200]!r}")
    assert isinstance(payload, dict), f"the status payload is not a JSON object: {payload!r}"
    return payload


def assert_success(payload: dict[str, object], key: str, version: str, edge: DockerEdge) -> None:
    expected = status.success(BUCKET, key, version)
    problems = status.conformance_problems(payload, expect=expected)
    assert not problems and payload == expected, (
        f"the success payload does not match seed 003: {'; '.join(problems) or 'values differ'}; "
        f"received {json.dumps(payload)}\nexpected: {json.dumps(expected)}\nconnector log:\n{edge.log_text()}"
    )


def running(edge: DockerEdge) -> dict[str, str]:
    """Every container of the engine (not only the connector's prefix), name -> state."""
    return edge.engine.containers()


def expected_names(services: tuple[str, ...]) -> set[str]:
    return {f"{PREFIX}_{s}_1" for s in services}


def reconnect_observer(edge: DockerEdge, observers: list[MqttDevice]) -> None:
    """After a core restart: old observers go (same client id); a new one subscribes first."""
    for old in observers:
        old.close()
    ep = edge.core.endpoints()[0]
    client = MqttDevice(edge.ids.observer, edge.creds(edge.ids.observer))
    res = client.connect(ep.host, ep.port)
    assert res.connected, f"the observer could not reconnect to the core: {res.reason} {res.error}"
    client.subscribe(status.STATUS_TOPIC, qos=1)
    observers.append(client)


@pytest.fixture
def edge(docker_edge: object) -> DockerEdge:
    assert isinstance(docker_edge, DockerEdge)
    return docker_edge


@pytest.fixture
def observer(status_observer: object) -> MqttDevice:
    assert isinstance(status_observer, MqttDevice)
    return status_observer


@pytest.fixture
def observers(edge: DockerEdge, observer: MqttDevice) -> Iterator[list[MqttDevice]]:
    """The observer, plus the ones made after core restarts (closed at the end)."""
    made = [observer]
    yield made
    for client in made[1:]:
        client.close()  # closing twice is harmless


@pytest.mark.requirement(
    "Deploying a compose file publishes the exact success payload, runs every service in a container named "
    "with the greengrassdockerapplicationdeployment prefix on the board's architecture, and stores the "
    "compose "
    "file in the destination directory, readable only by the Docker user",
    source="seed 003 (output data, usage: project name prefix); core-behaviour.md Docker",
)
def test_dk1_deploy_reports_success_and_runs_containers(
    edge: DockerEdge, observer: MqttDevice, profile: DeviceProfile
) -> None:
    dest = edge.destination("dk1")
    key, version = upload(edge, "app-v1")
    edge.conn.deploy(params(edge, dest, key, version))
    assert_success(received(observer, edge), key, version, edge)
    containers = running(edge)
    unprefixed = sorted(n for n in containers if not n.startswith(PREFIX))
    assert not unprefixed, f"containers not prefixed {PREFIX!r}: {unprefixed} (all: {sorted(containers)})"
    want = expected_names(V1)
    assert {n for n, s in containers.items() if s == "running"} == want, (
        f"running containers {sorted(containers.items())}, expected exactly {sorted(want)} running"
    )
    for name in sorted(want):
        service = name.split("_")[1]
        line = f"ggapp {service} running on {profile.arch}"
        logs = edge.engine.logs(name)
        assert line in logs, f"{name} did not run as {profile.arch} code: its log is {logs.strip()[-300:]!r}"
    stat = edge.target.run(["stat", "-c", "%u %a", f"{dest}/docker-compose.yml"], timeout=30)
    assert stat.ok, f"no stored compose file {dest}/docker-compose.yml on the core:\n{stat.evidence()}"
    assert stat.stdout.split() == [edge.uid, "600"], (
        f"the stored compose file is owner/mode {stat.stdout.strip()}, expected {edge.uid} 600"
    )
    stored = edge.target.read_text(f"{dest}/docker-compose.yml")
    assert stored == (COMPOSE / "app-v1.yml").read_text(), (
        "the stored compose file differs from the deployed one"
    )


INVALID = {
    "user-not-a-uid": ({"DockerUserId": "ggc_user"}, "DockerUserId"),
    "force-deploy-not-boolean": ({"ForceDeploy": "Maybe"}, "ForceDeploy"),
    "relative-destination": (
        {"DockerComposeFileDestinationPath": "compose/here"},
        "DockerComposeFileDestinationPath",
    ),
}


@pytest.mark.requirement(
    "An invalid connector parameter publishes the exact failure payload with error InvalidParameter and an "
    "error_message naming the parameter, and starts no container",
    source="seed 003 (output data: failure)",
)
@pytest.mark.parametrize("case", sorted(INVALID))
def test_dk2_invalid_parameter_fails(edge: DockerEdge, observer: MqttDevice, case: str) -> None:
    bad, name = INVALID[case]
    dest = edge.destination("dk2")
    key, version = upload(edge, "app-v1")
    edge.conn.deploy({**params(edge, dest, key, version), **bad})
    payload = received(observer, edge)
    problems = status.conformance_problems(payload)
    assert not problems, (
        f"the failure payload does not match seed 003: {'; '.join(problems)}; received {payload}"
    )
    assert payload["status"] == "fail" and payload["error"] == "InvalidParameter", (
        f"{case}: expected status fail with error InvalidParameter, received {payload}"
    )
    assert name in str(payload["error_message"]), (
        f"error_message does not name {name}: {payload['error_message']!r}"
    )
    assert not running(edge), (
        f"{case}: containers started although the parameters were refused: {running(edge)}"
    )


@pytest.mark.requirement(
    "A new deployment replaces the running containers when StopContainersOnNewDeployment is True and leaves "
    "them running when it is False",
    source="seed 003 (changelog v6: StopContainersOnNewDeployment)",
)
@pytest.mark.parametrize("stop_old", ["True", "False"])
def test_dk3_new_deployment_replaces_containers(
    edge: DockerEdge, observer: MqttDevice, stop_old: str
) -> None:
    dest = edge.destination("dk3")
    key1, ver1 = upload(edge, "app-v1")
    edge.conn.deploy(params(edge, dest, key1, ver1, StopContainersOnNewDeployment=stop_old))
    assert_success(received(observer, edge), key1, ver1, edge)
    key2, ver2 = upload(edge, "app-v2")
    edge.conn.deploy(params(edge, dest, key2, ver2, StopContainersOnNewDeployment=stop_old))
    assert_success(received(observer, edge), key2, ver2, edge)
    live = {n for n, s in running(edge).items() if s == "running"}
    want = expected_names(V2) | (set() if stop_old == "True" else expected_names(V1))
    left = sorted(set(running(edge)) - want)
    assert not left, (
        f"StopContainersOnNewDeployment={stop_old}: containers of the previous deployment still present: "
        f"{left}"
    )
    assert live == want, (
        f"StopContainersOnNewDeployment={stop_old}: running {sorted(live)}, expected {sorted(want)}"
    )


@pytest.mark.requirement(
    "Offline mode: when the compose file cannot be downloaded at core start, the connector uses the stored "
    "compose file and local images and reports success",
    source="seed 003 (usage: offline mode; changelog v7)",
)
def test_dk4_offline_uses_stored_compose_file(edge: DockerEdge, observers: list[MqttDevice]) -> None:
    dest = edge.destination("dk4")
    key, version = upload(edge, "app-v1")
    edge.conn.deploy(params(edge, dest, key, version, DockerOfflineMode="True"))
    assert_success(received(observers[0], edge), key, version, edge)
    edge.stop_core()
    edge.store.stop()
    edge.start_core(on_broker_up=lambda: reconnect_observer(edge, observers))
    assert_success(received(observers[-1], edge), key, version, edge)
    live = {n for n, s in running(edge).items() if s == "running"}
    assert live == expected_names(V1), (
        f"offline restart: running {sorted(live)}, expected {sorted(expected_names(V1))} from the stored "
        "compose "
        f"file; connector log:\n{edge.log_text()}"
    )


@pytest.mark.requirement(
    "Offline mode without a stored compose file, or with one whose images are not on the core, fails with "
    "error InternalError naming what is missing, and starts nothing",
    source="seed 003 (usage: offline mode)",
)
@pytest.mark.parametrize("case", ["no-stored-file", "no-local-image"])
def test_dk4_offline_without_compose_file_or_images_fails(
    edge: DockerEdge, observer: MqttDevice, case: str
) -> None:
    dest = edge.destination("dk4-missing")
    if case == "no-local-image":
        edge.target.run(
            ["sh", "-c", 'cat > "$1/docker-compose.yml"', "sh", dest],
            input=(COMPOSE / "missing-image.yml").read_bytes(),
            timeout=30,
        )
    key, version = upload(edge, "app-v1")
    edge.store.stop()
    edge.conn.deploy(params(edge, dest, key, version, DockerOfflineMode="True"))
    payload = received(observer, edge)
    problems = status.conformance_problems(payload)
    assert not problems, (
        f"the failure payload does not match seed 003: {'; '.join(problems)}; received {payload}"
    )
    assert payload["status"] == "fail" and payload["error"] == "InternalError", (
        f"{case}: offline with nothing to run must fail with InternalError; received {payload}"
    )
    clue = "docker-compose.yml" if case == "no-stored-file" else "ghost"
    assert clue in str(payload["error_message"]), (
        f"error_message does not name {clue!r}: {payload['error_message']!r}"
    )
    live = {n for n, s in running(edge).items() if s == "running"}
    assert not live, f"{case}: containers running after a failed offline deployment: {sorted(live)}"


@pytest.mark.requirement(
    "When the core stops the connector runs docker-compose down: no container or network of the application "
    "is left; when the core starts again the connector brings the application up again",
    source="seed 003 (usage: 10-minute cleanup on stop; containers start whenever the daemon restarts)",
)
def test_dk5_containers_gone_after_core_stops(edge: DockerEdge, observers: list[MqttDevice]) -> None:
    dest = edge.destination("dk5")
    key, version = upload(edge, "app-v1")
    edge.conn.deploy(params(edge, dest, key, version))
    assert_success(received(observers[0], edge), key, version, edge)
    assert expected_names(V1) <= set(running(edge)), f"deployment did not start {sorted(expected_names(V1))}"
    edge.stop_core()
    left = running(edge)
    assert not left, (
        f"containers left after the core stopped (docker-compose down not run?): {sorted(left.items())}"
    )
    nets = edge.engine.podman("network", "ls", "--format", "{{.Name}}").stdout.split()
    left_nets = [n for n in nets if n.startswith(PREFIX)]
    assert not left_nets, f"networks left after the core stopped: {left_nets}"
    edge.start_core(on_broker_up=lambda: reconnect_observer(edge, observers))
    assert_success(received(observers[-1], edge), key, version, edge)
    live = {n for n, s in running(edge).items() if s == "running"}
    assert live == expected_names(V1), (
        f"after the core restarted: running {sorted(live)}, expected {sorted(expected_names(V1))}"
    )


@pytest.mark.requirement(
    "DockerPullBeforeUp=True runs docker-compose pull before up, so a newer image of the same tag in the "
    "registry replaces the core's cached copy; with False the cached copy runs",
    source="seed 003 (changelog v4: pull-before-up; usage: Docker image updates)",
)
@pytest.mark.parametrize("pull", ["True", "False"])
def test_dk6_pull_before_up_updates_images(
    edge: DockerEdge, observer: MqttDevice, profile: DeviceProfile, pull: str
) -> None:
    edge.stale_latest()
    dest = edge.destination("dk6")
    key, version = upload(edge, "app-pull")
    edge.conn.deploy(params(edge, dest, key, version, DockerPullBeforeUp=pull))
    assert_success(received(observer, edge), key, version, edge)
    name = f"{PREFIX}_puller_1"
    build = "2" if pull == "True" else "1"
    logs = edge.engine.logs(name)
    assert f"ggapp puller running on {profile.arch} (build {build})" in logs, (
        f"DockerPullBeforeUp={pull}: expected the container to run build {build} "
        f"({'the registry' if build == '2' else 'the cached copy'}); its log: {logs.strip()[-200:]!r}"
    )
