"""The V1 OTA update agent (seed 004): applies one software-update job to this core.

``<root>/bin/ota-agent --root R --job FILE`` reads a job document, prints one JSON line with the outcome
(``status`` SUCCEEDED, FAILED or REJECTED, ``reason``, versions, ``unavailableS``) and exits 0 (an
outcome was reached) or 2 (usage). Why these rules (seed 004, core-behaviour.md):

- The job names ``softwareToUpdate`` (``core`` | ``ota_agent``), the target OS/architecture pair (one of
  ``ACCEPTED_PAIRS``, and the device's own: ``<root>/ota/device.json``, written from the device profile)
  and ``updateAgentLogLevel``. A bad field, a pair that is not accepted or not this device's, or less free
  space on the core's partition than ``minFreeBytes`` (400 MB) REJECTS the job before anything changes.
- With ``"managedRespawn": true`` in ``<root>/config/config.json`` the four scripts in
  ``<root>/usr/scripts/`` must exist, be owned by root, executable by root and by nobody else (no group
  or other write/execute bits) and exit 0: ``ggc_pre_update.sh`` must stop the core daemon,
  ``ggc_post_update.sh`` must start it. Otherwise the agent stops/starts the daemon itself
  (``<root>/bin/ggc-daemon``). A failing check or script FAILS the update; once the core was touched the
  agent rolls back to the previous version and restarts it.
- Installing ``core`` unpacks the package (a nucleus tarball) into a launch directory and switches
  ``alts/current`` to it (``alts/old`` keeps the previous one until success). The core config, group
  configuration, local shadows and logs are kept; the credential cache (``var/credentials``) and pending
  work queues (``var/queue``) are lost, as on a real V1 core.

Seeded defects: ``update_scripts_unchecked``, ``ota_requirements_unchecked``, ``rollback_disabled``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from typing import Any

from .alts import CURRENT, OLD, LaunchDirs
from .control import socket_path
from .cutpoints import cutpoint
from .persist import fsync_dir, sync_tree
from .release import load_release
from .settings import AgentSettings

ACCEPTED_PAIRS = (
    ("ubuntu", "x86_64"),
    ("ubuntu", "aarch64"),
    ("amazon_linux", "x86_64"),
    ("raspbian", "armv7l"),
    ("raspbian", "armv6l"),
    ("openwrt", "aarch64"),
    ("openwrt", "armv7l"),
)
SOFTWARE = ("core", "ota_agent")
LOG_LEVELS = ("NONE", "TRACE", "DEBUG", "VERBOSE", "INFO", "WARN", "ERROR", "FATAL")
SCRIPTS = ("ggc_pre_update.sh", "ggc_post_update.sh", "ota_pre_update.sh", "ota_post_update.sh")
MIN_FREE_BYTES = 400 * 1024 * 1024
SCRIPT_TIMEOUT_S = 120.0
DAEMON_TIMEOUT_S = 90.0
#: What a V1 core update keeps (checked by the scenarios) and loses.
KEPT = ("config/config.json", "config/group/group.json", "var/shadows", "logs")
LOST = ("var/credentials", "var/queue")
SUCCEEDED, FAILED, REJECTED = "SUCCEEDED", "FAILED", "REJECTED"


class Outcome(Exception):
    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


class OtaAgent:
    def __init__(self, root: str, settings: AgentSettings) -> None:
        self.root = root
        self.settings = settings
        self.alts = LaunchDirs(root, atomic=not settings.has("non_atomic_launch_switch"))
        self.device = _read_json(os.path.join(root, "ota", "device.json"))
        self.config = _read_json(os.path.join(root, "config", "config.json"))
        self.log_path = os.path.join(root, "logs", "ota_agent.log")
        self.touched = False
        self.down_since: float | None = None
        self.unavailable = 0.0

    def log(self, text: str) -> None:
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} [INFO] ota-agent: {text}\n")

    # -- checks before anything changes -----------------------------------------------------------
    def validate(self, job: dict[str, Any]) -> None:
        for key, allowed in (("softwareToUpdate", SOFTWARE), ("updateAgentLogLevel", LOG_LEVELS)):
            value = job.get(key, "ERROR" if key == "updateAgentLogLevel" else None)
            if value not in allowed:
                raise Outcome(REJECTED, f"job field {key!r} is {value!r}; allowed: {', '.join(allowed)}")
        for key in ("version", "package"):
            if not isinstance(job.get(key), str) or not job[key]:
                raise Outcome(REJECTED, f"job field {key!r} is missing")
        if self.settings.has("ota_requirements_unchecked"):
            return
        pair = (job.get("updateTargetsOperatingSystem"), job.get("updateTargetsArchitecture"))
        if pair not in ACCEPTED_PAIRS:
            pairs = ", ".join(f"{o}/{a}" for o, a in ACCEPTED_PAIRS)
            raise Outcome(REJECTED, f"OS/architecture {pair[0]}/{pair[1]} is not supported; allowed: {pairs}")
        mine = (self.device.get("os"), self.device.get("architecture"))
        if mine not in ACCEPTED_PAIRS:
            raise Outcome(REJECTED, f"this device is {mine[0]}/{mine[1]}, not a pair the OTA agent supports")
        if pair != mine:
            raise Outcome(REJECTED, f"job is for {pair[0]}/{pair[1]}, this device is {mine[0]}/{mine[1]}")
        need = int(self.device.get("minFreeBytes", MIN_FREE_BYTES))
        st = os.statvfs(self.root)
        free = st.f_bavail * st.f_frsize
        if free < need:
            raise Outcome(
                REJECTED, f"{free // 2**20} MiB free on {self.root}, the update needs {need // 2**20} MiB"
            )

    def check_scripts(self) -> None:
        if not self.managed or self.settings.has("update_scripts_unchecked"):
            return
        for name in SCRIPTS:
            path = self.script(name)
            try:
                st = os.stat(path)
            except OSError:
                raise Outcome(FAILED, f"managedRespawn: {path} is missing") from None
            if st.st_uid != 0:
                raise Outcome(FAILED, f"managedRespawn: {path} is owned by uid {st.st_uid}, not root")
            if not st.st_mode & 0o100 or st.st_mode & 0o033:
                raise Outcome(
                    FAILED,
                    f"managedRespawn: {path} has mode {st.st_mode & 0o777:o}; it must be executable by"
                    " root only (e.g. 0700 or 0744)",
                )

    @property
    def managed(self) -> bool:
        return self.config.get("managedRespawn") is True

    def script(self, name: str) -> str:
        return os.path.join(self.root, "usr", "scripts", name)

    # -- running scripts and the daemon -----------------------------------------------------------
    def run_script(self, name: str) -> None:
        if not self.managed:
            return
        argv = [self.script(name)]
        try:
            res = subprocess.run(argv, capture_output=True, timeout=SCRIPT_TIMEOUT_S, check=False)
            code, out = res.returncode, (res.stdout + res.stderr).decode(errors="replace").strip()
        except (OSError, subprocess.TimeoutExpired) as exc:
            code, out = -1, str(exc)
        self.log(f"{name} exited {code}: {out[-300:]}")
        if code != 0 and not self.settings.has("update_scripts_unchecked"):
            raise Outcome(FAILED, f"{name} exited with status {code}: {out[-300:]}")

    def daemon(self, verb: str, *, own: bool = False) -> None:
        """Stop or start the core: the managedRespawn script, or ``ggc-daemon`` without it (or ``own``)."""
        if self.managed and not own:
            self.run_script("ggc_pre_update.sh" if verb == "stop" else "ggc_post_update.sh")
        else:
            ggc = os.path.join(self.root, "bin", "ggc-daemon")
            res = subprocess.run([ggc, verb], capture_output=True, timeout=SCRIPT_TIMEOUT_S, check=False)
            if res.returncode != 0:
                raise Outcome(FAILED, f"ggc-daemon {verb} exited {res.returncode}")

    def serving(self) -> str:
        """The version the core's nucleus answers with on its CLI socket, or ''."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(2.0)
                conn.connect(socket_path(self.root))
                conn.sendall(b'{"op": "ping"}\n')
                answer = json.loads(conn.recv(4096).decode())
            return str(answer.get("version", "")) if answer.get("ok") else ""
        except (OSError, ValueError):
            return ""

    def wait_serving(self, version: str) -> None:
        deadline = time.monotonic() + DAEMON_TIMEOUT_S
        got = ""
        while time.monotonic() < deadline:
            got = self.serving()
            if got == version:
                return
            if got and self.alts.has("broken"):
                break  # the loader rolled the new version back: it will not come
            time.sleep(0.2)
        serves = got or "nothing"
        raise Outcome(FAILED, f"the core does not serve {version} after the update (it serves {serves})")

    def stop_core(self) -> None:
        self.daemon("stop")
        self.down_since = time.time()
        if self.serving():
            raise Outcome(FAILED, "the core still runs after the pre-update step (it must stop the daemon)")

    def start_core(self, version: str, *, own: bool = False) -> None:
        self.daemon("start", own=own)
        self.wait_serving(version)
        if self.down_since is not None:
            self.unavailable += time.time() - self.down_since
            self.down_since = None

    # -- the update -------------------------------------------------------------------------------
    def install_core(self, job: dict[str, Any]) -> None:
        package, version, job_id = job["package"], job["version"], str(job.get("jobId", "job"))
        want = job.get("sha256")
        if want and _sha256(package) != want:
            raise Outcome(FAILED, f"{package}: SHA-256 does not match the job")
        dest = self.alts.link(f"ota-{job_id}")
        part = dest + ".part"
        shutil.rmtree(part, ignore_errors=True)
        with tarfile.open(package, "r:gz") as tar:
            for m in tar.getmembers():
                if m.name.startswith("/") or ".." in m.name.split("/") or not (m.isfile() or m.isdir()):
                    raise Outcome(FAILED, f"{package}: unsafe member {m.name!r}")
            tar.extractall(part)  # members checked above
        got = load_release(os.path.join(part, "distro", "release.json"))["version"]
        if got != version:
            shutil.rmtree(part, ignore_errors=True)
            raise Outcome(FAILED, f"{package} holds core {got}, not {version}")
        sync_tree(part)  # on disk before ``current`` can point at it (a power cut right after the switch)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(part, dest)
        fsync_dir(self.alts.dir)
        for rel in LOST:
            shutil.rmtree(os.path.join(self.root, rel), ignore_errors=True)
        current = self.alts.target(CURRENT)
        if current:
            self.alts.set(OLD, current)
        self.alts.set(CURRENT, os.path.basename(dest))
        cutpoint("ota.installed")

    def rollback(self, old_version: str) -> str:
        """Back to the previous version, running; the agent's own respawn when a script is what failed."""
        if self.settings.has("rollback_disabled"):
            return "not rolled back (rollback disabled)"
        if not self.alts.has(OLD):
            if self.serving() == old_version:
                return f"the loader rolled back to {old_version}"
            if self.alts.target(CURRENT) and not self.serving():
                self._restart_old(old_version)
            return f"no old version to roll back to; the core serves {self.serving() or 'nothing'}"
        try:
            if self.serving():
                self.daemon("stop", own=True)
        except Outcome:
            pass
        self.alts.rollback()
        self.alts.drop("broken")
        problem = self._restart_old(old_version)
        return f"rolled back to {old_version}" + (f", but {problem}" if problem else "")

    def _restart_old(self, version: str) -> str:
        for own in (False, True):
            try:
                self.start_core(version, own=own)
                return ""
            except Outcome as exc:
                problem = f"the old core did not start: {exc.reason}"
        return problem

    def apply(self, job: dict[str, Any]) -> dict[str, Any]:
        before = self.serving() or load_release(
            os.path.join(self.alts.distro() or "", "release.json")
        )["version"]
        result: dict[str, Any] = {"jobId": job.get("jobId"), "from": before, "to": job.get("version")}
        try:
            self.validate(job)
            self.check_scripts()
            if job["softwareToUpdate"] == "ota_agent":
                self.run_script("ota_pre_update.sh")
                self.touched = True
                os.makedirs(os.path.join(self.root, "ota"), exist_ok=True)
                with open(os.path.join(self.root, "ota", "agent.json"), "w", encoding="utf-8") as fh:
                    json.dump({"version": job["version"]}, fh)
                self.run_script("ota_post_update.sh")
                raise Outcome(SUCCEEDED, f"OTA agent {job['version']} installed")
            self.run_script("ota_pre_update.sh")
            self.touched = True
            self.stop_core()
            cutpoint("ota.pre_scripts_done")
            self.install_core(job)
            self.start_core(job["version"])
            self.run_script("ota_post_update.sh")
            cutpoint("ota.post_scripts_done")
            self.alts.drop(OLD)
            raise Outcome(SUCCEEDED, f"core {before} -> {job['version']}")
        except Outcome as out:
            result["status"], result["reason"] = out.status, out.reason
        except (OSError, tarfile.TarError, subprocess.SubprocessError) as exc:
            result["status"], result["reason"] = FAILED, f"{type(exc).__name__}: {exc}"
        if result["status"] == FAILED and self.touched and job.get("softwareToUpdate") == "core":
            result["reason"] += f"; {self.rollback(before)}"
        elif result["status"] == FAILED and self.touched and not self.serving():
            try:
                self.start_core(before)  # the core must not stay down after a failed script
            except Outcome as exc:
                result["reason"] += f"; the core did not come back: {exc.reason}"
        result["after"] = self.serving()
        if self.down_since is not None and result["after"]:
            self.unavailable += time.time() - self.down_since
        result["unavailableS"] = round(self.unavailable, 3)
        self.log(f"job {result['jobId']}: {result['status']}: {result['reason']}")
        return result


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    root = job_path = ""
    usage = "usage: ota-agent --root DIR --job FILE"
    while args:
        a = args.pop(0)
        if a == "--root" and args:
            root = args.pop(0)
        elif a == "--job" and args:
            job_path = args.pop(0)
        else:
            print(f"ota-agent: unknown argument {a!r}\n{usage}", file=sys.stderr)
            return 2
    if not root or not job_path:
        print(usage, file=sys.stderr)
        return 2
    job = _read_json(job_path)
    if not job:
        print(f"ota-agent: {job_path}: not a JSON job document", file=sys.stderr)
        return 2
    settings = AgentSettings.load(os.path.join(root, "config", "agent.json"))
    print(json.dumps(OtaAgent(os.path.abspath(root), settings).apply(job)))
    return 0
