"""Host side of the power-loss layer: mount it over a directory of a qemu-user target, see cut markers.

Least invasive placement: the target's mount namespace is private and made at power-on, so the layer is
mounted *into* it after power-on (nsenter into the target's mount and PID namespaces), not into the host;
nothing in ``harness/targets`` changes. Mount it before the core starts (and again after every power-on):
the core must open its files through the layer.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from harness.errors import InfraError, TargetError
from harness.powerloss.cuts import WriteCut
from harness.targets.qemu_user import QemuUserTarget

MOUNT_TIMEOUT_S = 120.0
DAEMON_MODULE = "harness.powerloss.daemon"


def namespace_init_pid(target: QemuUserTarget) -> int:
    """The PID (host view) of the target's init, found by its command line; no private attribute read."""
    needle = json.dumps(str(target.workdir / "mnt"))
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            status = (proc / "status").read_text()
        except OSError:
            continue
        if "nsinit.py" not in cmd or needle not in cmd:
            continue
        nspid = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
        if len(nspid) >= 2 and nspid[-1] == "1":
            return int(proc.name)
    raise TargetError(f"{target.name}: target is powered off (no init process for {target.workdir})")


class PowerLossLayer:
    """The write-back cache file system over ``path`` (a directory on the target, e.g. the core's root)."""

    def __init__(
        self,
        target: QemuUserTarget,
        path: str,
        *,
        volatile: tuple[str, ...] = ("run",),
        write_cut: WriteCut | None = None,
        commit_s: float | None = None,
        write_through: bool = False,
    ) -> None:
        if not isinstance(target, QemuUserTarget):
            raise TargetError(f"{target.name}: the power-loss layer needs a qemu-user target")
        self.target = target
        self.path = "/" + path.strip("/")
        self.volatile = volatile
        self.write_cut = write_cut
        #: None: strict POSIX (only fsync makes anything durable); a number: an ext4-like ordered journal
        #: that commits metadata every ``commit_s`` seconds and on every fsync (ext4's ``commit=``)
        self.commit_s = commit_s
        #: every change durable at once (nothing is lost): the crash model, with operation cuts
        self.write_through = write_through
        slug = self.path.strip("/").replace("/", "_") or "root"
        self.marker = target.workdir / f"powerloss-{slug}.cut"
        self.log = target.workdir / f"powerloss-{slug}.log"
        self._live = target.workdir / "mnt" / f"powerloss-live-{slug}"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def mountpoint(self) -> str:
        """The mount point as the daemon sees it (the target's root under its work directory)."""
        return f"{self.target.workdir}/mnt/root{self.path}"

    def mount(self, timeout: float = MOUNT_TIMEOUT_S) -> None:
        """Mount the layer (after power-on, before the core starts); a failure carries the daemon's log."""
        self.reap()
        self.marker.unlink(missing_ok=True)
        res = self.target.run(["mkdir", "-p", self.path], timeout=60)
        if not res.ok:
            raise TargetError(f"{self.target.name}: cannot create {self.path}:\n{res.evidence()}")
        cfg = {
            "mountpoint": self.mountpoint,
            "live": str(self._live),
            "marker": str(self.marker),
            "volatile": list(self.volatile),
            "write_cut": self.write_cut.label() if self.write_cut else None,
            "commit_s": self.commit_s,
            "write_through": self.write_through,
        }
        argv = [
            "nsenter",
            f"--target={namespace_init_pid(self.target)}",
            "--mount",
            "--pid",
            "--",
            sys.executable,
            "-m",
            DAEMON_MODULE,
            json.dumps(cfg),
        ]
        self._proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=self.log.open("ab"),
            stdin=subprocess.DEVNULL,
            preexec_fn=self.target.cgroup.join,
            cwd="/",
        )
        line = _read_line(self._proc, timeout)
        if line != "READY":
            self.reap(kill=True)
            detail = line[6:] if line.startswith("ERROR ") else (line or f"no answer within {timeout:g} s")
            log = self.log.read_text(errors="replace")[-1500:] if self.log.exists() else ""
            raise InfraError(
                f"{self.target.name}: the power-loss layer on {self.path} failed: {detail}\n{log}"
            )
        # reap nsenter as soon as the cut ends the daemon: a zombie would hold up the target's teardown,
        # which waits until every process of its cgroup is gone from /proc
        threading.Thread(target=self._proc.wait, daemon=True).start()

    @property
    def mounted(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def cut_hit(self) -> str | None:
        """The cut point the layer froze at (``write:<path>@<n>``), or None."""
        try:
            text = self.marker.read_text().strip()
        except FileNotFoundError:
            return None
        return text or None

    def wait_cut(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hit = self.cut_hit()
            if hit:
                return hit
            time.sleep(0.05)
        return None

    def reap(self, kill: bool = False) -> None:
        """Collect the daemon after a power cut (it died with the target) or kill it (failed mount)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if kill and proc.poll() is None:
            proc.kill()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stdout:
            proc.stdout.close()


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    assert proc.stdout is not None
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    return out[0].decode(errors="replace").strip() if out else ""
