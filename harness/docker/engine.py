"""A private podman: its own store, configuration and network namespace, removed completely on close.

Tests must never touch the machine's global podman state, and podman's bridges, veth pairs and firewall rules
must not appear on the host: every engine has a store under the harness state directory (vfs driver, so image
layers need no mounts), its own containers.conf/storage.conf passed through ``CONTAINERS_CONF`` and
``CONTAINERS_STORAGE_CONF``, and every podman or compose command runs inside a network namespace the engine
creates (``ip netns add``), entered with ``nsenter --net`` (``ip netns exec`` would remount /sys and hide the
cgroup mounts runc needs).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import InfraError, InputError
from harness.paths import state_dir
from harness.procs import pid_alive

#: runc from Debian: crun fails on this machine's hybrid cgroup layout.
RUNTIME = "runc"
#: Limits every container gets (runc refuses the unlimited defaults podman would copy from the host here).
ULIMITS = ("nofile=1024:1024", "nproc=1024:1024")
DEFAULT_TIMEOUT_S = 120.0
ENGINE_FILE = "engine.json"
#: ``docker-compose`` (Debian's 1.29.2, the tool seed 003 names) against the engine's Docker-compatible
#: API, or ``podman-compose`` (Debian's 1.0.3, drives the podman CLI); see README, Docker, for the choice.
COMPOSE_TOOLS = ("docker-compose", "podman-compose")
API_START_TIMEOUT_S = 30.0
#: The local registry's address inside every engine's own network namespace (always free there).
REGISTRY_ADDRESS = "127.0.0.1:5000"
PROCESS_EXIT_TIMEOUT_S = 30.0
#: An engine directory without its engine.json younger than this is being created, not stale.
FRESH_S = 60.0
NETNS_PREFIX = "ggdk-"


@dataclass(frozen=True)
class EngineResult:
    """What one podman/compose command did."""

    argv: list[str]
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def evidence(self, tail: int = 1500) -> str:
        text = (self.stdout + ("\n" + self.stderr if self.stderr else "")).strip()
        return f"$ {' '.join(self.argv)}\nexit {self.exit_status}\n{text[-tail:]}"


def engines_dir(base: Path | None = None) -> Path:
    return (base or state_dir()) / "docker"


class PodmanEngine:
    """One private container engine; ``close`` removes its containers, images, networks, store, namespace."""

    def __init__(self, base: Path | None = None, *, container_env: Mapping[str, str] | None = None) -> None:
        """``container_env`` goes into every container (``QEMU_CPU``: binfmt's emulator reads it there)."""
        token = secrets.token_hex(4)
        gc_stale_engines(base)
        self.root = engines_dir(base) / f"engine-{os.getpid()}-{token}"
        self.netns = f"{NETNS_PREFIX}{token}"
        self.root.mkdir(parents=True, mode=0o700)
        for sub in ("storage", "run", "tmp", "cni", "work"):
            (self.root / sub).mkdir(mode=0o700)
        (self.root / ENGINE_FILE).write_text(json.dumps({"owner": os.getpid(), "netns": self.netns}))
        (self.root / "storage.conf").write_text(
            "[storage]\n"
            'driver = "vfs"\n'
            f'graphroot = "{self.root / "storage"}"\n'
            f'runroot = "{self.root / "run"}"\n'
        )
        ulimits = ", ".join(f'"{u}"' for u in ULIMITS)
        envs = ", ".join(json.dumps(f"{k}={v}") for k, v in sorted((container_env or {}).items()))
        (self.root / "containers.conf").write_text(
            "[containers]\n"
            f"default_ulimits = [{ulimits}]\n"
            f"env = [{envs}]\n"
            "[engine]\n"
            f'runtime = "{RUNTIME}"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{self.root / "events.log"}"\n'
            f'tmp_dir = "{self.root / "tmp"}"\n'
            "[network]\n"
            f'network_config_dir = "{self.root / "cni"}"\n'
        )
        (self.root / "registries.conf").write_text(
            "# only the harness's registry, inside this engine's network namespace; no short-name search\n"
            "unqualified-search-registries = []\n"
            "[[registry]]\n"
            f'location = "{REGISTRY_ADDRESS}"\n'
            "insecure = true\n"
        )
        self._closed = False
        self._api: subprocess.Popen[bytes] | None = None
        try:
            _ip_netns("add", self.netns)
        except InfraError:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    @property
    def work(self) -> Path:
        """Host-side scratch space of this engine (compose projects)."""
        return self.root / "work"

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return _engine_env(self.root, extra)

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        cwd: Path | None = None,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> EngineResult:
        """Run ``argv`` in the engine's network namespace with its configuration; bounded by ``timeout``."""
        full = ["nsenter", f"--net=/run/netns/{self.netns}", *argv]
        proc = subprocess.Popen(
            full,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=self.env(env),
            start_new_session=True,  # a timeout kills compose and every podman it started
        )
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            killpg(proc.pid)
            out, err = proc.communicate(timeout=30)
            raise InfraError(
                f"{' '.join(argv)} did not finish within {timeout:g} s; last output:\n"
                f"{(out + err).decode(errors='replace')[-800:]}"
            ) from None
        return EngineResult(
            list(argv), proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
        )

    def compose(self, tool: str, project: str, file: Path, *args: str, timeout: float) -> EngineResult:
        """``<tool> -p project -f file args``; docker-compose talks to the engine's API socket."""
        if tool not in COMPOSE_TOOLS:
            raise InputError(f"compose tool {tool!r} is not supported; allowed: {', '.join(COMPOSE_TOOLS)}")
        env = {}
        if tool == "docker-compose":
            env["DOCKER_HOST"] = f"unix://{self.start_api()}"
        return self.run(
            [tool, "-p", project, "-f", str(file), *args], timeout=timeout, cwd=file.parent, env=env
        )

    def start_api(self) -> Path:
        """The Docker-compatible API (``podman system service``) on a private socket, started once."""
        sock = self.root / "api.sock"
        if self._api is not None and self._api.poll() is None:
            return sock
        log = (self.root / "api.log").open("ab")
        self._api = subprocess.Popen(
            [
                "nsenter",
                f"--net=/run/netns/{self.netns}",
                "podman",
                "system",
                "service",
                "--time=0",
                f"unix://{sock}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=self.env(),
            start_new_session=True,
        )
        log.close()
        _update_engine_file(self.root, api_pid=self._api.pid)
        deadline = time.monotonic() + API_START_TIMEOUT_S
        while not _accepts(sock):
            if self._api.poll() is not None or time.monotonic() > deadline:
                tail = (self.root / "api.log").read_text(errors="replace")[-800:]
                self._stop_api()
                raise InfraError(
                    f"podman system service did not listen on {sock} within "
                    f"{API_START_TIMEOUT_S:g} s:\n{tail}"
                )
            time.sleep(0.1)
        return sock

    def _stop_api(self) -> None:
        if self._api is None:
            return
        killpg(self._api.pid, signal.SIGTERM)
        try:
            self._api.wait(timeout=10)
        except subprocess.TimeoutExpired:
            killpg(self._api.pid)
            self._api.wait(timeout=30)
        self._api = None

    def podman(
        self, *args: str, timeout: float = DEFAULT_TIMEOUT_S, input: bytes | None = None
    ) -> EngineResult:
        return self.run(["podman", *args], timeout=timeout, input=input)

    def containers(self, name_prefix: str = "") -> dict[str, str]:
        """Containers of this engine (also stopped ones), name -> state."""
        res = self.podman("ps", "-a", "--format", "json", timeout=60)
        if not res.ok:
            raise InfraError(f"listing containers failed:\n{res.evidence()}")
        out: dict[str, str] = {}
        for row in json.loads(res.stdout or "[]"):
            for name in row.get("Names") or []:
                if name.startswith(name_prefix):
                    out[name] = str(row.get("State", ""))
        return out

    def logs(self, container: str) -> str:
        res = self.podman("logs", container, timeout=60)
        return res.stdout + res.stderr

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop_api()
        _teardown(self.root, self.netns)


def _engine_env(root: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(root / "containers.conf")
    env["CONTAINERS_STORAGE_CONF"] = str(root / "storage.conf")
    env["CONTAINERS_REGISTRIES_CONF"] = str(root / "registries.conf")
    env["TMPDIR"] = str(root / "tmp")
    env.pop("DOCKER_HOST", None)
    if extra:
        env.update(extra)
    return env


def killpg(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _accepts(sock: Path) -> bool:
    if not sock.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(sock))
        except OSError:
            return False
    return True


def _update_engine_file(root: Path, **values: object) -> None:
    info = read_engine_file(root)
    info.update(values)
    (root / ENGINE_FILE).write_text(json.dumps(info))


def engine_processes(root: Path) -> list[str]:
    """Live processes started for this engine (API service, conmon, compose), found by the engine's path."""
    out = []
    needle = str(root).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmd:
            text = cmd.replace(b"\0", b" ").decode(errors="replace")
            out.append(f"pid {proc.name}: {text[:160]}")
    return out


def _ip_netns(verb: str, name: str) -> None:
    res = subprocess.run(["ip", "netns", verb, name], capture_output=True, text=True, timeout=30, check=False)
    if res.returncode != 0:
        raise InfraError(f"ip netns {verb} {name} failed: {res.stderr.strip()}")


def netns_exists(name: str) -> bool:
    return bool(name) and "/" not in name and Path("/run/netns", name).exists()


def list_engine(root: Path) -> dict[str, list[str]]:
    """Containers, images, networks and pods an engine directory still holds (empty lists when none)."""
    info = read_engine_file(root)
    netns = info.get("netns", "")
    prefix = ["nsenter", f"--net=/run/netns/{netns}"] if netns and netns_exists(str(netns)) else []
    out: dict[str, list[str]] = {}
    queries = {
        "container": ["ps", "-a", "--format", "{{.Names}}"],
        "image": ["images", "--format", "{{.Repository}}:{{.Tag}}"],
        "network": ["network", "ls", "--format", "{{.Name}}"],
        "pod": ["pod", "ls", "--format", "{{.Name}}"],
    }
    for kind, args in queries.items():
        try:
            res = subprocess.run(
                [*prefix, "podman", *args],
                capture_output=True,
                text=True,
                timeout=60,
                env=_engine_env(root),
                check=False,
            )
        except subprocess.TimeoutExpired:
            out[kind] = ["(podman did not answer within 60 s)"]
            continue
        names = [n for n in res.stdout.split() if n and n != "podman"]  # "podman": the built-in network
        out[kind] = names
    return out


def read_engine_file(root: Path) -> dict[str, object]:
    try:
        data = json.loads((root / ENGINE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _teardown(root: Path, netns: str) -> None:
    """Remove everything an engine made: containers (no grace period), store, mounts, network namespace."""
    api = read_engine_file(root).get("api_pid")
    if isinstance(api, int) and any(line.startswith(f"pid {api}:") for line in engine_processes(root)):
        killpg(api)
    prefix = ["nsenter", f"--net=/run/netns/{netns}"] if netns_exists(netns) else []
    env = _engine_env(root)
    for args in (
        ["pod", "rm", "-a", "-f"],
        ["rm", "-a", "-f", "-t", "0"],
        ["system", "reset", "--force"],
    ):
        try:
            subprocess.run([*prefix, "podman", *args], capture_output=True, timeout=120, env=env, check=False)
        except subprocess.TimeoutExpired:
            pass
    # conmon writes the exit status of a killed container after podman returned: wait for the engine's own
    # processes to end before removing their directory, then remove it (retrying briefly for late writers)
    deadline = time.monotonic() + PROCESS_EXIT_TIMEOUT_S
    while engine_processes(root) and time.monotonic() < deadline:
        time.sleep(0.2)
    for line in engine_processes(root):
        killpg(int(line.split()[1].rstrip(":")))
    _unmount_under(root)
    if netns_exists(netns):
        _ip_netns("delete", netns)
    for _ in range(10):
        shutil.rmtree(root, ignore_errors=True)
        if not root.exists():
            break
        time.sleep(0.3)


def _unmount_under(root: Path) -> None:
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    points = sorted(
        (f[1] for f in (ln.split() for ln in lines) if len(f) > 1 and f[1].startswith(str(root))),
        key=len,
        reverse=True,
    )
    for p in points:
        subprocess.run(["umount", "-l", p], capture_output=True, timeout=30, check=False)


def gc_stale_engines(base: Path | None = None) -> list[str]:
    """Tear down engines whose owning harness process is gone (it was killed before it could close them)."""
    removed: list[str] = []
    d = engines_dir(base)
    if not d.exists():
        return removed
    for root in d.glob("engine-*"):
        info = read_engine_file(root)
        owner = info.get("owner")
        if isinstance(owner, int) and pid_alive(owner):
            continue
        if not info and _age_s(root) < FRESH_S:  # being created right now: engine.json is not written yet
            continue
        _teardown(root, str(info.get("netns", "")))
        removed.append(str(root))
    return removed


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


    return True
