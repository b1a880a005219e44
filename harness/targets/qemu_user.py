"""The chroot target: a Debian userland of the profile's architecture, run through qemu-user.

A target is a private PID and mount namespace whose init (``nsinit``) overlays a writable disk image on
the cached root file system and chroots into it. Commands enter it with nsenter; foreign binaries run
through binfmt_misc and qemu-user with the profile's CPU (``QEMU_CPU``); everything joins the target's
memory cgroup. Power cut = SIGKILL to that init: the kernel kills the whole namespace at once.
The disk image persists across power cycles of one target and is deleted when the target is closed.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from harness.errors import InfraError, TargetError, UserlandMismatch
from harness.leaks import OWNER_FILE, gc_stale_targets
from harness.paths import state_dir
from harness.profiles import DEBIAN_ARCH_BASELINE, DeviceProfile
from harness.rootfs import RootfsSpec, ensure_rootfs
from harness.targets.base import Target
from harness.targets.cgroup import MemoryCgroup
from harness.targets.safepath import resolve_in_root

TARGET_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_DEBIAN_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf"}.get(platform.machine(), "")
BOOT_TIMEOUT_S = 60.0
SIGILL_STATUS = 128 + signal.SIGILL

_live: set[QemuUserTarget] = set()
_live_lock = threading.Lock()


def live_targets() -> list[QemuUserTarget]:
    with _live_lock:
        return list(_live)


class QemuUserTarget(Target):
    """A board emulated by chroot + qemu-user (or a native chroot when the architecture is the host's)."""

    def __init__(
        self,
        profile: DeviceProfile,
        *,
        rootfs: Path | None = None,
        instance: str | None = None,
        netns: Path | None = None,
    ) -> None:
        """``netns``: a network namespace (``/run/netns/NAME``) the target lives in instead of the host's."""
        if profile.userland is None:
            raise TargetError(f"profile {profile.name}: a qemu-user target needs a userland")
        self.profile = profile
        self.name = profile.name
        self.netns = netns
        self.kernel_is_host = True
        self.spec = RootfsSpec.from_userland(profile.userland)
        self._rootfs = rootfs
        self.emulated = profile.userland.architecture != HOST_DEBIAN_ARCH
        base = state_dir() / "targets"
        base.mkdir(parents=True, exist_ok=True)
        gc_stale_targets()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{instance or profile.name}-", dir=base))
        (self.workdir / OWNER_FILE).write_text(str(os.getpid()))
        self.disk_image = self.workdir / "disk.img" if profile.resources.disk_mb else None
        self._init: subprocess.Popen[bytes] | None = None
        self._init_pid: int | None = None
        self._lifeline: int | None = None
        limit = profile.resources.memory_mb
        self.cgroup = MemoryCgroup(self.workdir.name, limit * 1024 * 1024 if limit else None)
        self.boot_log = self.workdir / "boot.log"
        with _live_lock:
            _live.add(self)

    # -- root file system -------------------------------------------------------------------------
    @property
    def rootfs(self) -> Path:
        if self._rootfs is None:
            self._rootfs = ensure_rootfs(self.spec)
        return self._rootfs

    @property
    def rootfs_key(self) -> str:
        return self.spec.key

    def _make_disk(self) -> None:
        assert self.disk_image is not None and self.profile.resources.disk_mb is not None
        if self.disk_image.exists():
            return
        with self.disk_image.open("wb") as fh:
            fh.truncate(self.profile.resources.disk_mb * 1024 * 1024)
        res = subprocess.run(
            [
                "mkfs.ext4",
                "-q",
                "-F",
                "-m",
                "0",
                "-E",
                "lazy_itable_init=1,lazy_journal_init=1",
                str(self.disk_image),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if res.returncode != 0:
            raise InfraError(f"mkfs.ext4 {self.disk_image} failed: {res.stderr.strip()}")

    # -- power ------------------------------------------------------------------------------------
    @property
    def is_on(self) -> bool:
        return self._init is not None and self._init.poll() is None

    def power_on(self) -> None:
        if self.is_on:
            return
        lower = self.rootfs
        if self.disk_image is not None:
            self._make_disk()
        self._wait_disk_free()
        read_end, write_end = os.pipe()
        cfg = {
            "run_dir": str(self.workdir / "mnt"),
            "lower": str(lower),
            "disk_image": str(self.disk_image) if self.disk_image else None,
            "tmp_noexec": self.profile.resources.tmp_noexec,
            "lifeline_fd": read_end,
        }
        if self.disk_image is None:
            (self.workdir / "mnt" / "disk").mkdir(parents=True, exist_ok=True)
        join_net = ["nsenter", f"--net={self.netns}", "--"] if self.netns else []
        argv = [
            *join_net,
            "unshare",
            "--pid",
            "--mount",
            "--fork",
            "--propagation",
            "private",
            "--",
            sys.executable,
            "-I",
            str(Path(__file__).with_name("nsinit.py")),
            json.dumps(cfg),
        ]
        self._init = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=self.boot_log.open("ab"),
            stdin=subprocess.DEVNULL,
            pass_fds=(read_end,),
            preexec_fn=self._enter_cgroup,
            cwd="/",
        )
        os.close(read_end)
        self._lifeline = write_end
        line = self._read_line(self._init, BOOT_TIMEOUT_S)
        if line != "READY":
            self._teardown()
            detail = line[6:] if line.startswith("ERROR ") else (line or "no answer")
            boot = self.boot_log.read_text(errors="replace")[-1500:]
            raise TargetError(f"{self.name}: target did not power on: {detail}\n{boot}".rstrip())
        self._init_pid = self._find_init_pid(self._init.pid)
        self._probe()

    def _enter_cgroup(self) -> None:
        self.cgroup.join()
        os.setsid()

    @staticmethod
    def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
        assert proc.stdout is not None
        result: list[bytes] = []
        reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        return result[0].decode(errors="replace").strip() if result else ""

    @staticmethod
    def _find_init_pid(unshare_pid: int, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children")
        while time.monotonic() < deadline:
            try:
                pids = children.read_text().split()
            except FileNotFoundError:
                pids = []
            if pids:
                return int(pids[0])
            time.sleep(0.02)
        raise TargetError(f"cannot find the init process of the target started by unshare pid {unshare_pid}")

    def _probe(self) -> None:
        """Run one command: a userland that cannot run on the emulated CPU is diagnosed here."""
        res = self.run(["/bin/sh", "-c", "exit 0"], timeout=60)
        if res.exit_status == SIGILL_STATUS or "Illegal instruction" in res.stderr:
            self.power_cut()
            u = self.profile.userland
            assert u is not None
            raise UserlandMismatch(
                f"{self.profile.source}: the {u.architecture} userland (built for "
                f"{DEBIAN_ARCH_BASELINE.get(u.architecture, u.architecture)}) cannot run on the emulated CPU "
                f"{self.profile.emulation.cpu or 'default'} ({self.profile.arch}): its first command died "
                f"with "
                f"SIGILL (Illegal instruction). Pair arch {self.profile.arch} with a userland built for it "
                f"(for armv6l: Debian armel)."
            )
        if res.exit_status != 0:
            raise TargetError(f"{self.name}: the first command on the target failed:\n{res.evidence()}")

    def power_off(self, grace: float = 10.0) -> None:
        """Clean stop: init sends SIGTERM to everything, waits ``grace`` seconds, then SIGKILL, then sync."""
        if self._init is None:
            return
        if self._init.poll() is None:
            os.kill(self._init_pid or self._init.pid, signal.SIGTERM)
            try:
                self._init.wait(timeout=grace + 10)
            except subprocess.TimeoutExpired:
                pass
        self._teardown()

    def power_cut(self) -> None:
        """Pull the plug: SIGKILL the namespace's init, so the kernel kills every process of it at once."""
        if self._init is None:
            return
        if self._init_pid is not None:
            try:
                os.kill(self._init_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._teardown()

    def _teardown(self) -> None:
        proc, self._init, self._init_pid = self._init, None, None
        members = self.cgroup.pids()
        if self._lifeline is not None:
            os.close(self._lifeline)  # an init still running sees EOF and kills its namespace
            self._lifeline = None
        if proc is not None:
            try:
                proc.wait(timeout=15)  # unshare exits once it has reaped the init
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
            if proc.stdout:
                proc.stdout.close()
        self.cgroup.kill_all()
        self._wait_gone(members)
        self._wait_disk_free()

    @staticmethod
    def _wait_gone(pids: list[int], timeout: float = 15.0) -> None:
        """Wait until the target's processes are fully gone (reaped), not only dead."""
        deadline = time.monotonic() + timeout
        for pid in pids:
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.02)

    def _wait_disk_free(self, timeout: float = 15.0) -> None:
        """Wait until no loop device holds the disk image (the old namespace's mounts are gone)."""
        if self.disk_image is None or not self.disk_image.exists():
            return
        deadline = time.monotonic() + timeout
        while True:
            res = subprocess.run(
                ["losetup", "-j", str(self.disk_image)],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            if not res.stdout.strip():
                return
            if time.monotonic() > deadline:
                raise InfraError(f"disk image {self.disk_image} still attached: {res.stdout.strip()}")
            time.sleep(0.05)

    # -- commands ---------------------------------------------------------------------------------
    def target_env(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        full = {"PATH": TARGET_PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb"}
        if self.emulated and self.profile.emulation.cpu:
            full["QEMU_CPU"] = self.profile.emulation.cpu
        full.update(env or {})
        return full

    def popen(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        stdout: int | IO[Any] | None = subprocess.PIPE,
        stderr: int | IO[Any] | None = subprocess.PIPE,
    ) -> subprocess.Popen[bytes]:
        if not self.is_on or self._init_pid is None:
            raise TargetError(f"{self.name}: target is powered off")
        if not argv:
            raise TargetError("empty command")
        full = [
            "nsenter",
            f"--target={self._init_pid}",
            "--mount",
            "--pid",
            *(["--net"] if self.netns else []),
            "--root",
            f"--wdns={cwd or '/'}",
            "--",
            *argv,
        ]
        return subprocess.Popen(
            full,
            env=self.target_env(env),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            preexec_fn=self._enter_cgroup,
        )

    # -- files ------------------------------------------------------------------------------------
    def _host_path(self, remote: str, follow_last: bool = True) -> Path:
        if not self.is_on or self._init_pid is None:
            raise TargetError(f"{self.name}: target is powered off")
        return resolve_in_root(Path(f"/proc/{self._init_pid}/root"), remote, follow_last=follow_last)

    def put(self, local: Path, remote: str, mode: int | None = None) -> None:
        dest = self._host_path(remote)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, dest)
        if mode is not None:
            os.chmod(dest, mode)

    def get(self, remote: str, local: Path) -> None:
        src = self._host_path(remote)
        if not src.exists():
            raise TargetError(f"{self.name}: no file {remote}")
        shutil.copyfile(src, local)

    def read_text(self, remote: str, timeout: float = 30.0) -> str | None:
        try:
            return self._host_path(remote).read_text(errors="replace")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def memory_limit_kb(self) -> int | None:
        mb = self.profile.resources.memory_mb
        return mb * 1024 if mb else None

    def close(self) -> None:
        try:
            if self.is_on:
                self.power_off()
            else:
                self._teardown()
        finally:
            self.cgroup.remove()
            shutil.rmtree(self.workdir, ignore_errors=True)
            with _live_lock:
                _live.discard(self)
