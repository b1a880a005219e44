"""A local image registry (Debian's docker-registry, the CNCF distribution server) for docker-compose pull.

It listens on 127.0.0.1:5000 *inside the engine's network namespace*, so it is reachable only by that
engine's podman and never on the host's loopback; plain HTTP there (the engine's registries.conf marks it
insecure) because podman's API service reads registry CAs only from the global /etc/containers/certs.d.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from harness.docker.engine import REGISTRY_ADDRESS, PodmanEngine, killpg
from harness.errors import InfraError

START_TIMEOUT_S = 30.0
PROBE = "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1).close()"


class LocalRegistry:
    """One registry per engine; ``stop`` ends it (the engine's teardown would too)."""

    def __init__(self, engine: PodmanEngine) -> None:
        self.engine = engine
        self.address = REGISTRY_ADDRESS
        self.dir = engine.root / "registry"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        config = self.dir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.dir / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.address}\n"
        )
        res = subprocess.run(
            ["ip", "-n", self.engine.netns, "link", "set", "lo", "up"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if res.returncode != 0:
            raise InfraError(f"cannot bring up loopback in {self.engine.netns}: {res.stderr.strip()}")
        log = (self.dir / "registry.log").open("ab")
        self._proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.engine.netns}", "docker-registry", "serve", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        port = self.address.rsplit(":", 1)[1]
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.engine.run([sys.executable, "-c", PROBE, port], timeout=10).ok:
            if self._proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.dir / "registry.log").read_text(errors="replace")[-800:]
                self.stop()
                raise InfraError(f"the local registry did not listen on {self.address}:\n{tail}")
            time.sleep(0.2)

    def push(self, local_ref: str, name: str) -> str:
        """Push a local image as ``<registry>/<name>``; returns that reference."""
        ref = f"{self.address}/{name}"
        res = self.engine.podman("push", "--tls-verify=false", local_ref, ref, timeout=120)
        if not res.ok:
            raise InfraError(f"pushing {local_ref} to {ref} failed:\n{res.evidence()}")
        return ref

    def stop(self) -> None:
        if self._proc is None:
            return
        killpg(self._proc.pid)
        self._proc.wait(timeout=30)
        self._proc = None

    @property
    def log_path(self) -> Path:
        return self.dir / "registry.log"
