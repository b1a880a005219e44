"""The Docker application deployment connector (seed 003), as a long-lived part of the reference core.

It runs beside the core on the harness's side and drives the private podman engine with ``docker-compose``
through the engine's Docker-compatible API (pull, up, down; project name
``greengrassdockerapplicationdeployment``); the board's side of the contract
lives on the target: the Docker user and group, the destination directory and the stored compose file. It
reports every deployment on ``dockerapplicationdeploymentconnector/message/status`` through the core's broker,
as a client device with its own certificate (mutual TLS), like any component talking to the broker.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.clients.mqtt import Credentials, MqttDevice
from harness.docker import status
from harness.docker.engine import EngineResult, PodmanEngine
from harness.docker.params import REQUIRED, RULES, ConnectorParameters, InvalidParameter, parse
from harness.docker.store import FetchError, fetch
from harness.errors import InfraError
from harness.targets.base import Target

COMPOSE_FILE = "docker-compose.yml"
DEFAULT_USER = "ggc_user"
DOCKER_GROUP = "docker"
#: Seed 003: cleanup after ``docker-compose down`` may take up to 10 minutes.
DOWN_TIMEOUT_S = 600.0
UP_TIMEOUT_S = 300.0
PULL_TIMEOUT_S = 300.0
TARGET_CMD_TIMEOUT_S = 60.0
WRONG_PROJECT = "dockerapplication"


class DeploymentFailed(Exception):
    """A deployment ended in a failure payload."""

    def __init__(self, error: status.ErrorType, message: str) -> None:
        super().__init__(message)
        self.error = error


@dataclass
class Outcome:
    """What one deployment did: the payload published and the connector's log lines for it."""

    payload: dict[str, str]
    log: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.payload.get("status") == "success"


@dataclass(frozen=True)
class BrokerAccess:
    """How the connector reaches the core's broker: address and its own client identity."""

    host: str
    port: int
    thing: str
    creds: Credentials


class DockerConnector:
    """Runs compose applications for the core's deployments and reports their status."""

    def __init__(
        self,
        target: Target,
        engine: PodmanEngine,
        broker: BrokerAccess,
        store_endpoint: str,
        store_ca_pem: str,
        *,
        faults: frozenset[str] = frozenset(),
        compose_tool: str = "docker-compose",
    ) -> None:
        self.target = target
        self.compose_tool = compose_tool
        self.engine = engine
        self.broker = broker
        self.store_endpoint = store_endpoint.rstrip("/")
        self.store_ca_pem = store_ca_pem
        self.faults = faults
        self.project = WRONG_PROJECT if "wrong_prefix" in faults else status.PROJECT_PREFIX
        self.current: ConnectorParameters | None = None
        self._current_raw: dict[str, str] | None = None
        self._compose_on_host: Path | None = None
        self._client: MqttDevice | None = None
        self._uid, self._gid = "", ""
        self.log: list[str] = []
        self.log_path = engine.work / "connector.log"

    # -- lifecycle (the core's) ---------------------------------------------------------------------
    def start(self) -> Outcome | None:
        """Core start: connect to the broker and bring the last deployment's containers up again."""
        self._connect()
        if self._current_raw is None:
            return None
        return self._deploy(self._current_raw)

    def stop(self) -> None:
        """Core stop: ``docker-compose down`` unless StopContainersOnNewDeployment is False."""
        try:
            if self.current is not None and self.current.stop_on_new_deployment:
                if "no_down_on_stop" in self.faults:
                    self._log("core stopping: (fault no_down_on_stop) containers left running")
                else:
                    self._down("core stopping")
        finally:
            self._disconnect()

    def deploy(self, parameters: Mapping[str, str]) -> Outcome:
        """A new group deployment with these connector parameters."""
        if self._client is None:
            self._connect()
        if self.current is not None and self.current.stop_on_new_deployment:
            if "old_containers_kept" in self.faults:
                self._log("new deployment: (fault old_containers_kept) previous containers left running")
            else:
                self._down("new deployment")
        return self._deploy(dict(parameters))

    def close(self) -> None:
        """Leave nothing behind: the project down (whatever the parameters say) and the broker connection."""
        try:
            self._down("connector closing", force=True)
        finally:
            self._disconnect()

    def clear(self) -> None:
        """Harness-side reset between scenarios: remove the project's containers and networks directly
        (podman, no compose: what the scenarios judge is the connector's own ``down``, not this)."""
        self._disconnect()
        self._remove_project()
        self.forget()

    def forget(self) -> None:
        """Drop the last deployment (a fresh core for the next scenario)."""
        self.current, self._current_raw, self._compose_on_host = None, None, None

    # -- one deployment -----------------------------------------------------------------------------
    def _deploy(self, raw: dict[str, str]) -> Outcome:
        start = len(self.log)
        try:
            try:
                params = parse(raw)
            except InvalidParameter as exc:
                if "invalid_parameter_ignored" not in self.faults:
                    raise DeploymentFailed("InvalidParameter", str(exc)) from None
                self._log(f"(fault invalid_parameter_ignored) {exc}")
                params = _parse_dropping_invalid(raw)
            self._check_user(params)
            compose = self._compose_file(params)
            self.current, self._current_raw = params, raw
            self._up(params, compose)
            payload = status.success(params.bucket, params.key, params.version)
        except DeploymentFailed as exc:
            self._log(f"deployment failed ({exc.error}): {exc}")
            payload = status.failure(exc.error, str(exc))
            if "failure_without_error" in self.faults:
                payload.pop("error")
        self._publish(payload)
        return Outcome(payload, self.log[start:])

    def _check_user(self, p: ConnectorParameters) -> None:
        """The Docker user exists on the core, is in group docker and can write the destination directory."""
        spec = p.user_id or DEFAULT_USER
        # one command on the target (each costs an emulated process start on qemu-user boards)
        script = (
            'uid=$(id -u "$1") || exit 3; echo "uid=$uid"; echo "gid=$(id -g "$uid")"; '
            'echo "groups=$(id -Gn "$uid" | tr " " ,)"; '
            'setpriv --reuid="$uid" --regid="$(id -g "$uid")" --clear-groups test -d "$2" -a -w "$2" '
            "&& echo writable=yes || echo writable=no"
        )
        res = self.target.run(["sh", "-c", script, "sh", spec, p.destination], timeout=TARGET_CMD_TIMEOUT_S)
        if res.exit_status == 3:
            what = f"DockerUserId {p.user_id}" if p.user_id else f"the default user {DEFAULT_USER}"
            raise DeploymentFailed("InvalidParameter", f"{what}: no such user on the core")
        facts = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
        if not res.ok or not {"uid", "gid", "groups", "writable"} <= set(facts):
            raise DeploymentFailed(
                "InternalError", f"cannot check the Docker user on the core:\n{res.evidence()}"
            )
        uid, gid = facts["uid"], facts["gid"]
        if DOCKER_GROUP not in facts["groups"].split(","):
            raise DeploymentFailed(
                "InternalError",
                f"user {uid} is not in the '{DOCKER_GROUP}' group on the core, so it cannot use "
                "the Docker daemon",
            )
        probe_ok = facts["writable"] == "yes"
        if not probe_ok:
            raise DeploymentFailed(
                "InvalidParameter",
                f"DockerComposeFileDestinationPath {p.destination} is not an existing directory writable by "
                f"user {uid}",
            )
        self._uid, self._gid = uid, gid

    def _compose_file(self, p: ConnectorParameters) -> bytes:
        """Download the compose file and store its copy; in offline mode fall back to the stored copy."""
        url = f"{self.store_endpoint}/{p.bucket}/{p.key}" + (f"?versionId={p.version}" if p.version else "")
        stored = f"{p.destination}/{COMPOSE_FILE}"
        try:
            data = fetch(url, self.store_ca_pem)
        except FetchError as exc:
            if not p.offline_mode:
                raise DeploymentFailed("InternalError", f"cannot download the compose file: {exc}") from None
            self._log(f"offline mode: download failed ({exc}); using the stored compose file {stored}")
            text = None if "offline_ignores_stored" in self.faults else self.target.read_text(stored)
            if text is None:
                if "offline_missing_ok" in self.faults:
                    self._log("(fault offline_missing_ok) no stored compose file; reporting success anyway")
                    return b""
                raise DeploymentFailed(
                    "InternalError",
                    f"offline mode: the compose file could not be downloaded ({exc}) and there is no stored "
                    f"compose file {stored}",
                ) from None
            return text.encode()
        self._store_copy(data, stored)
        return data

    def _store_copy(self, data: bytes, stored: str) -> None:
        with tempfile.NamedTemporaryFile(delete=False) as fh:
            fh.write(data)
        try:
            part = stored + ".part"
            self.target.put(Path(fh.name), part, mode=0o600)
        finally:
            Path(fh.name).unlink()
        res = self.target.run(
            ["sh", "-c", 'chown "$1:$2" "$3" && mv -f "$3" "$4"', "sh", self._uid, self._gid, part, stored],
            timeout=TARGET_CMD_TIMEOUT_S,
        )
        if not res.ok:
            raise DeploymentFailed(
                "InternalError", f"cannot store the compose file as {stored}:\n{res.evidence()}"
            )
        self._log(f"stored the compose file as {stored} (owner {self._uid}, mode 0600)")

    def _up(self, p: ConnectorParameters, compose: bytes) -> None:
        if not compose:
            return
        try:
            services = _services(compose)
        except ValueError as exc:
            raise DeploymentFailed("InternalError", f"the compose file is not valid: {exc}") from None
        path = self.engine.work / COMPOSE_FILE
        path.write_bytes(compose)
        self._compose_on_host = path
        if p.pull_before_up and "pull_skipped" in self.faults:
            self._log("(fault pull_skipped) DockerPullBeforeUp ignored")
        elif p.pull_before_up:
            res = self._compose("pull", timeout=PULL_TIMEOUT_S)
            if not res.ok or (self.compose_tool == "podman-compose" and "Error" in res.stderr):
                if not p.offline_mode:
                    raise DeploymentFailed("InternalError", f"docker-compose pull failed:\n{_tail(res)}")
                self._log("offline mode: pull failed; using local images")
        args = ["up", "-d"] + (["--force-recreate"] if p.force_deploy else [])
        res = self._compose(*args, timeout=UP_TIMEOUT_S)
        missing = self._not_running(services)
        if missing and p.force_deploy:
            self._log(f"ForceDeploy: services {', '.join(missing)} not running; down, then up again")
            self._down("ForceDeploy retry", force=True)
            res = self._compose(*args, timeout=UP_TIMEOUT_S)
            missing = self._not_running(services)
        if missing:
            raise DeploymentFailed(
                "InternalError",
                f"docker-compose up did not start service(s) {', '.join(missing)}:\n{_tail(res)}",
            )
        self._log(f"docker-compose up: {', '.join(services)} running as project {self.project}")

    def _not_running(self, services: list[str]) -> list[str]:
        running = {n for n, s in self.engine.containers(self.project + "_").items() if s == "running"}
        return [s for s in services if f"{self.project}_{s}_1" not in running]

    def _down(self, why: str, *, force: bool = False) -> None:
        if self._compose_on_host is None or not self._compose_on_host.exists():
            if not force:
                return
        else:
            res = self._compose("down", timeout=DOWN_TIMEOUT_S)
            self._log(f"{why}: docker-compose down (exit {res.exit_status})")
        if force:  # whatever is left of the project (containers of an earlier compose file too)
            self._remove_project()
        else:  # docker-compose down removes the project's networks; podman-compose 1.0.3 leaves them
            self._remove_project(containers=False)

    def _remove_project(self, *, containers: bool = True) -> None:
        names = list(self.engine.containers(self.project + "_")) if containers else []
        if names:
            self.engine.podman("rm", "-f", "-t", "0", *names, timeout=120)
        nets = self.engine.podman("network", "ls", "--format", "{{.Name}}", timeout=60)
        left = [n for n in nets.stdout.split() if n.startswith(self.project + "_")]
        if left:
            self.engine.podman("network", "rm", "-f", *left, timeout=60)

    def _compose(self, *args: str, timeout: float) -> EngineResult:
        assert self._compose_on_host is not None
        file = self._compose_on_host
        res = self.engine.compose(self.compose_tool, self.project, file, *args, timeout=timeout)
        self._log(
            f"$ {self.compose_tool} -p {self.project} -f {file} {' '.join(args)} -> exit {res.exit_status}"
        )
        return res

    # -- reporting ----------------------------------------------------------------------------------
    def _connect(self) -> None:
        if self._client is not None:
            return
        client = MqttDevice(self.broker.thing, self.broker.creds)
        res = client.connect(self.broker.host, self.broker.port)
        if not res.connected:
            client.close()
            raise InfraError(
                f"the docker connector ({self.broker.thing}) could not connect to the core's broker at "
                f"{self.broker.host}:{self.broker.port}: {res.reason} {res.error}"
            )
        self._client = client

    def _disconnect(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _publish(self, payload: dict[str, str]) -> None:
        if self._client is None:
            self._connect()
        assert self._client is not None
        if not self._client.publish(status.STATUS_TOPIC, status.encode(payload), qos=1):
            raise InfraError(f"the docker connector could not publish its status on {status.STATUS_TOPIC}")
        self._log(f"published on {status.STATUS_TOPIC}: {json.dumps(payload)}")

    def _log(self, line: str) -> None:
        stamped = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}"
        self.log.append(stamped)
        with self.log_path.open("a") as fh:
            fh.write(stamped + "\n")


def _parse_dropping_invalid(raw: dict[str, str]) -> ConnectorParameters:
    """The fault ``invalid_parameter_ignored``: bad values are silently replaced by defaults."""
    given = dict(raw)
    while True:
        try:
            return parse(given)
        except InvalidParameter as exc:
            bad = next((name for name in RULES if name in str(exc) and name in given), None)
            if bad is None or bad in REQUIRED:
                raise DeploymentFailed("InvalidParameter", str(exc)) from None
            del given[bad]


def _services(compose: bytes) -> list[str]:
    doc = yaml.safe_load(compose)
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict) or not doc["services"]:
        raise ValueError("no 'services' mapping")
    return [str(s) for s in doc["services"]]


def _tail(res: EngineResult, lines: int = 12) -> str:
    text = (res.stdout + "\n" + res.stderr).strip().splitlines()
    return "\n".join(text[-lines:])
