"""The docker suite's core: a reference core with the Docker connector as one of its long-lived parts.

Starting the core starts the connector (which brings the last deployment's containers up again, as seed 003
says it does whenever the daemon restarts); stopping the core stops the connector first (``docker-compose
down``). The core has its own install root and thing name so it never collides with the core other suites
use on the same target, and its own device-group policy: the connector may publish its status topic, an
observer may subscribe to it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from harness.clients.mqtt import Credentials
from harness.cloud.templates import DEFAULT_DEVICE_TEMPLATE
from harness.docker.connector import DOCKER_GROUP, BrokerAccess, DockerConnector
from harness.docker.engine import PodmanEngine
from harness.docker.images import APP_REPO, import_app_image
from harness.docker.registry import LocalRegistry
from harness.docker.store import ComposeStore
from harness.errors import TargetError
from harness.paths import FIXTURES_DIR
from harness.profiles import DeviceProfile
from harness.targets.base import Target

POLICY = FIXTURES_DIR / "docker" / "policy.json"
INSTALL_ROOT = "/greengrass-docker"
#: The Linux user the seed recommends creating for the connector (instead of ggc_user), in group docker.
DOCKER_USER = "ggdocker"
DESTINATIONS = "/var/lib/ggdocker"


def container_env(profile: DeviceProfile) -> dict[str, str] | None:
    """Containers run the board's CPU model, as the target's own processes do (binfmt reads QEMU_CPU)."""
    cpu = profile.emulation.cpu if profile.transport == "qemu-user" else None
    return {"QEMU_CPU": cpu} if cpu else None


def core_name(profile: DeviceProfile) -> str:
    return "docker-" + re.sub(r"[^A-Za-z0-9-]", "-", profile.name)


@dataclass
class Identities:
    connector: str
    observer: str


def provision(cloud: object, name: str) -> Identities:
    """The core, the connector's and the observer's things, and the policy that lets them use the topic."""
    from harness.cloud.api import Cloud

    assert isinstance(cloud, Cloud)
    cloud.provision_core(name)
    ids = Identities(connector=f"{name}-dockerconnector", observer=f"{name}-observer")
    for thing in (ids.connector, ids.observer):
        body = {
            "type": "Create",
            "devices": [
                {
                    "name": thing,
                    "provisioningTemplate": DEFAULT_DEVICE_TEMPLATE,
                    "cdfProvisioningParameters": {"keyType": "ec"},
                }
            ],
        }
        task = cloud.wait_task(cloud.submit_device_task(name, body), 120)
        if task["taskStatus"] != "Success":
            raise TargetError(f"provisioning {thing} failed: {task}")
    policy = json.loads(POLICY.read_text().replace("SCENARIO", name))
    cloud.set_client_policy(name, policy, source=str(POLICY))
    return ids


def prepare_target(target: Target) -> str:
    """Seed 003's Docker user setup on the core: group docker, a user in it; returns the user's UID."""
    script = (
        'getent group "$1" >/dev/null || groupadd --system "$1"; '
        'id -u "$2" >/dev/null 2>&1 || '
        'useradd --system --no-create-home --shell /usr/sbin/nologin -G "$1" "$2"; '
        'id -u ggc_user >/dev/null 2>&1 && usermod -aG "$1" ggc_user; '
        'mkdir -p "$3" && chmod 755 "$3"; id -u "$2"'
    )
    res = target.run(["sh", "-c", script, "sh", DOCKER_GROUP, DOCKER_USER, DESTINATIONS], timeout=120)
    if not res.ok:
        raise TargetError(f"{target.name}: setting up the Docker user failed:\n{res.evidence()}")
    return res.stdout.strip().splitlines()[-1]


class DockerEdge:
    """A reference core, its Docker connector, the private engine and the compose file store."""

    def __init__(
        self, target: Target, profile: DeviceProfile, cloud: object, *, faults: frozenset[str] = frozenset()
    ) -> None:
        from harness.cloud.api import Cloud
        from harness.core.reference import ReferenceCore

        assert isinstance(cloud, Cloud)
        self.target, self.profile, self.cloud = target, profile, cloud
        self.name = core_name(profile)
        self.ids = provision(cloud, self.name)
        self.core = ReferenceCore(
            target, profile.model_copy(update={"install_root": INSTALL_ROOT}), cloud, self.name
        )
        self.engine = PodmanEngine(container_env=container_env(profile))
        self.store = ComposeStore(self.engine.root)
        self.registry = LocalRegistry(self.engine)
        self.latest = ""
        self.connector: DockerConnector | None = None
        try:
            self.uid = prepare_target(target)
            self.image = import_app_image(self.engine, profile)
            self.store.start()
            self.core.install()
            self.core.start()
            self.connector = self._new_connector(faults)
            self.connector.start()
        except BaseException:
            self.close()
            raise

    def creds(self, thing: str) -> Credentials:
        files = self.cloud.device_files(thing)  # type: ignore[attr-defined]
        return Credentials(ca_pem=self.core_ca_pem, cert_path=files.cert_path, key_path=files.key_path)

    @property
    def core_ca_pem(self) -> str:
        return str(self.cloud.core_ca(self.name).pem)  # type: ignore[attr-defined]

    def _new_connector(self, faults: frozenset[str]) -> DockerConnector:
        ep = self.core.endpoints()[0]
        broker = BrokerAccess(ep.host, ep.port, self.ids.connector, self.creds(self.ids.connector))
        return DockerConnector(
            self.target,
            self.engine,
            broker,
            f"https://127.0.0.1:{self.store.port}",
            self.store.ca_pem,
            faults=faults,
        )

    @property
    def conn(self) -> DockerConnector:
        assert self.connector is not None
        return self.connector

    def destination(self, name: str) -> str:
        """A fresh destination directory on the core, owned by the Docker user, closed to others (0700)."""
        path = f"{DESTINATIONS}/{name}"
        res = self.target.run(
            [
                "sh",
                "-c",
                'rm -rf "$1" && mkdir -p "$1" && chown "$2" "$1" && chmod 700 "$1"',
                "sh",
                path,
                self.uid,
            ],
            timeout=60,
        )
        if not res.ok:
            raise TargetError(f"creating {path} on the core failed:\n{res.evidence()}")
        return path

    def stale_latest(self) -> str:
        """Make the core's local copy of the registry's ``ggapp:latest`` an older build (build 1 vs 2)."""
        if not self.latest:  # the registry starts on first use: only DK6 needs it
            self.registry.start()
            newer = import_app_image(self.engine, self.profile, ("build2",), build=2)
            self.latest = self.registry.push(newer, "ggapp:latest")
        res = self.engine.podman("tag", f"{APP_REPO}:v1", self.latest, timeout=60)
        if not res.ok:
            raise TargetError(f"tagging the stale local image failed:\n{res.evidence()}")
        return self.latest

    def stop_core(self) -> None:
        """The core stops: its connector first (down), then the broker."""
        self.conn.stop()
        self.core.stop()

    def start_core(self, on_broker_up: Callable[[], None] | None = None) -> None:
        """Core start: broker, then ``on_broker_up`` (clients reconnect), then the connector."""
        self.core.start()
        if on_broker_up is not None:
            on_broker_up()
        self.conn.start()

    def reset(self) -> None:
        """Between scenarios: no containers or networks of the last one, store online, core running."""
        self.store.start()
        if not self.core.status().running:
            self.core.start()
        self.conn.clear()
        self.conn.start()

    def log_text(self) -> str:
        return "\n".join(self.conn.log[-40:]) if self.connector else ""

    def close(self) -> None:
        try:
            if self.connector is not None:
                self.connector.close()
        finally:
            try:
                self.core.close()
            finally:
                self.store.close()
                self.registry.stop()
                self.engine.close()
                if self.target.is_on:
                    self.target.run(["rm", "-rf", DESTINATIONS, INSTALL_ROOT], timeout=60)
