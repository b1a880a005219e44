"""A whole emulated board: qemu-system with the profile's own kernel, RAM and raw root disk, reached over SSH.

Under qemu-user the kernel is the host's; here it is the guest's, so kernel facts (config, cgroups, sysctls)
are authoritative (``kernel_is_host = False``) and a power cut loses what a real plug pull loses.

- **on**: copy the golden disk (first power on only), start QEMU (``-m`` = the profile's memory, user-mode
  networking with SSH forwarded from 127.0.0.1 only, serial console to a log file, an HMP monitor on a unix
  socket), wait until sshd answers. Commands, ``put`` and ``get`` go through the SSH target's control master,
  with the harness's own key (0600) and the image's host key pinned (StrictHostKeyChecking=yes).
- **off**: ``systemctl poweroff`` in the guest, wait for QEMU to exit; if it does not, ACPI power button, then
  SIGKILL (recorded).
- **cut**: SIGKILL QEMU. Fault model ``vm-kill``: the guest's page cache and every write the guest had not
  yet submitted to its virtual disk are gone; writes already submitted to the host survive (the host is the
  disk). The next ``power_on`` fscks the raw image first (``e2fsck -fn`` for the verdict as found, then
  ``e2fsck -fy`` to repair as a board's boot would) and records the result in ``fsck_results``.

Nothing leaks: QEMU gets PR_SET_PDEATHSIG(SIGKILL) so it dies with the harness; each VM directory carries
its owner's pid and the next harness reaps the QEMU and directory of a dead one; ``qemu_system_leaks``
reports anything left. No tap device and no namespace is created (user-mode networking).
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.errors import InfraError, TargetError
from harness.paths import cache_dir, state_dir
from harness.procs import pid_alive, processes
from harness.profiles import DeviceProfile, PowerConfig, SshConfig
from harness.rootfs import RootfsSpec
from harness.targets.base import Facts
from harness.targets.qemu_system_image import VmImage, ensure_image
from harness.targets.ssh import SshTarget

OWNER_FILE = "owner.pid"
PID_FILE = "qemu.pid"
FAULT_MODEL = "vm-kill"
FAULT_MODEL_TEXT = (
    "vm-kill: QEMU is SIGKILLed; the guest kernel's page cache and unsubmitted writes are lost, writes the "
    "guest had submitted to its virtual disk survive (like a disk without a volatile cache)"
)
#: Address of the host's loopback as the guest sees it (QEMU user-mode networking).
HOST_FROM_GUEST = "10.0.2.2"
PR_SET_PDEATHSIG = 1
FSCK_TIMEOUT_S = 600.0
_SSH_PROBE_TIMEOUT_S = 20.0


def vm_root(base: Path | None = None) -> Path:
    d = (base or state_dir()) / "qemu-system"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _die_with_parent() -> None:
    """Runs in the child before exec: QEMU gets SIGKILL when the harness dies (no orphaned VMs)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


KVM_PROBE_TIMEOUT_S = 30.0


def kvm_usable(profile: DeviceProfile, kernel: Path | None = None) -> bool:
    """KVM runs this guest: /dev/kvm opens, the guest architecture is the host's, and a probe boots.

    The probe matters under nested virtualization, where /dev/kvm exists yet QEMU with KVM can hang
    silently before the guest's first console line (seen on this project's CI machine). It starts the
    profile's kernel with KVM and waits for its banner on the serial port; the answer is cached per host
    boot (``/proc/sys/kernel/random/boot_id``) in the cache directory.
    """
    if profile.arch != platform.machine() or profile.system is None:
        return False
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    if kernel is None:
        return True
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot_id = "unknown"
    cpu = profile.system.cpu or ""
    cache = cache_dir() / f"kvm-probe-{boot_id}-{profile.system.qemu}-{cpu.replace('/', '_')}.json"
    try:
        return bool(json.loads(cache.read_text())["usable"])
    except (OSError, ValueError, KeyError):
        pass
    usable = _probe_kvm(profile.system.qemu, profile.system.machine, cpu, kernel)
    cache.write_text(json.dumps({"usable": usable}))
    return usable


def _probe_kvm(qemu: str, machine: str, cpu: str, kernel: Path) -> bool:
    argv = [qemu, "-machine", machine, "-accel", "kvm", *(["-cpu", cpu] if cpu else []), "-m", "256M",
            "-kernel", str(kernel), "-append", "console=ttyS0 console=ttyAMA0 panic=-1",
            "-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot"]
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    except OSError:
        return False
    seen = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            if b"Linux version" in line:
                seen.set()
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    seen.wait(KVM_PROBE_TIMEOUT_S)
    proc.kill()
    proc.wait(timeout=30)
    reader.join(5)
    return seen.is_set()


@dataclass
class FsckResult:
    """What e2fsck said about the raw disk after a cut, before the next boot."""

    when: str
    fault_model: str
    check_exit: int
    check_output: str
    repair_exit: int
    repair_output: str

    @property
    def clean(self) -> bool:
        return self.check_exit == 0

    def summary(self) -> str:
        verdict = {0: "clean", 1: "errors corrected", 2: "errors corrected, reboot needed"}.get(
            self.repair_exit, f"errors left uncorrected (e2fsck exit {self.repair_exit})")
        return (f"fsck after cut ({self.fault_model}): read-only check exit {self.check_exit} "
                f"({'clean' if self.clean else 'not clean'}); repair exit {self.repair_exit} ({verdict})")


class QemuSystemTarget(SshTarget):
    """A board as a whole QEMU machine; commands over SSH to its sshd."""

    def __init__(self, profile: DeviceProfile, instance: str | None = None) -> None:
        if profile.system is None or profile.userland is None:
            raise TargetError(f"profile {profile.name}: a qemu-system target needs 'system' and 'userland'")
        self.system = profile.system
        gc_stale_vms()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{instance or profile.name}-", dir=vm_root()))
        (self.workdir / OWNER_FILE).write_text(str(os.getpid()))
        self.disk = self.workdir / "root.raw"
        self.console_log = self.workdir / "console.log"
        self.monitor_path = self.workdir / "monitor.sock"
        self._image: VmImage | None = None
        self._qemu: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self.needs_fsck = False
        self.fsck_results: list[FsckResult] = []
        self.accel_used = ""
        self.boot_s: float | None = None
        ssh = SshConfig(host="127.0.0.1", port=22, connect_timeout_s=10.0)
        super().__init__(profile.model_copy(update={"ssh": ssh, "power": PowerConfig()}))
        self.profile = profile
        self.kernel_is_host = False
        self.fault_model = FAULT_MODEL

    # -- image --------------------------------------------------------------------------------------
    @property
    def rootfs_key(self) -> str:
        """Key of the cached root file system the disk was made from (a report property)."""
        assert self.profile.userland is not None
        return RootfsSpec.from_userland(self.profile.userland).key

    @property
    def image(self) -> VmImage:
        if self._image is None:
            self._image = ensure_image(self.profile)
        return self._image

    def qemu_argv(self, ssh_port: int) -> list[str]:
        """The QEMU command line: all board knowledge comes from the profile's ``system`` section."""
        s, img = self.system, self.image
        accels = [a for a in s.accel if a != "kvm" or kvm_usable(self.profile, img.kernel)] or ["tcg"]
        argv = [s.qemu, "-name", f"gg-harness-{self.workdir.name}", "-machine", s.machine]
        for a in accels:
            argv += ["-accel", a]
        if s.cpu:
            argv += ["-cpu", s.cpu]
        argv += ["-smp", str(s.smp)]
        if self.profile.resources.memory_mb:
            argv += ["-m", f"{self.profile.resources.memory_mb}M"]
        argv += ["-kernel", str(img.kernel)]
        if img.initrd:
            argv += ["-initrd", str(img.initrd)]
        if img.dtb:
            argv += ["-dtb", str(img.dtb)]
        argv += ["-append", " ".join(s.append)]
        if s.disk_interface != "none":
            drive = f"file={self.disk},format=raw,if={s.disk_interface},cache=writeback"
            argv += ["-drive", drive]
        argv += [
            "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
            "-device", f"{s.net_device},netdev=net0",
            "-display", "none",
            "-serial", f"file:{self.console_log}",
            "-monitor", f"unix:{self.monitor_path},server=on,wait=off",
            "-no-reboot",
            "-pidfile", str(self.workdir / PID_FILE),
            *s.extra_args,
        ]
        return argv

    # -- power --------------------------------------------------------------------------------------
    @property
    def is_on(self) -> bool:
        return self._qemu is not None and self._qemu.poll() is None and self._on

    def power_on(self) -> None:
        with self._lock:
            if self.is_on:
                return
            self._stop_qemu()
            if not self.disk.exists():
                self.image.copy_disk(self.disk)
            if self.needs_fsck:
                self.fsck_results.append(self.fsck())
                self.needs_fsck = False
            self._boot()

    def _boot(self) -> None:
        started = time.monotonic()
        last_err = ""
        for _attempt in range(3):  # the forwarded port can be taken between probing and QEMU binding it
            port = _free_port()
            self.cfg = SshConfig(host="127.0.0.1", port=port, connect_timeout_s=10.0,
                                 known_hosts=str(self._write_known_hosts(port)),
                                 key_file=str(self.image.ssh_key))
            self.console_log.unlink(missing_ok=True)
            qemu_log = (self.workdir / "qemu.stderr").open("wb")
            try:
                self._qemu = subprocess.Popen(
                    self.qemu_argv(port), stdin=subprocess.DEVNULL, stdout=qemu_log, stderr=qemu_log,
                    preexec_fn=_die_with_parent, start_new_session=True,
                )
            except FileNotFoundError:
                raise InfraError(f"{self.name}: {self.system.qemu} is not installed (Debian packages "
                                 "qemu-system-arm / qemu-system-x86)") from None
            finally:
                qemu_log.close()
            time.sleep(0.5)
            if self._qemu.poll() is None:
                break
            last_err = (self.workdir / "qemu.stderr").read_text(errors="replace").strip()
            if "hostfwd" not in last_err and "forwarding" not in last_err:
                break
        if self._qemu is None or self._qemu.poll() is not None:
            raise TargetError(f"{self.name}: QEMU exited at once: {last_err or self._qemu_stderr()}")
        self._wait_ssh(started)
        self.boot_s = round(time.monotonic() - started, 1)
        self.accel_used = self._accel()

    def _write_known_hosts(self, port: int) -> Path:
        path = self._ctl_dir / "known_hosts"
        path.write_text(f"[127.0.0.1]:{port} {self.image.host_key_line}\n")
        return path

    def _wait_ssh(self, started: float) -> None:
        deadline = started + self.system.boot_timeout_s
        last = ""
        while time.monotonic() < deadline:
            assert self._qemu is not None
            if self._qemu.poll() is not None:
                self._qemu = None
                raise TargetError(f"{self.name}: the VM stopped while booting; {self._qemu_stderr()}"
                                  f"\nconsole (last lines):\n{self.console_tail()}")
            try:
                res = subprocess.run([*self.ssh_argv(), "--", "true"], capture_output=True, text=True,
                                     timeout=_SSH_PROBE_TIMEOUT_S, check=False)
            except subprocess.TimeoutExpired:
                continue
            if res.returncode == 0:
                self._on = True
                return
            last = res.stderr.strip()
            time.sleep(2.0)
        self._stop_qemu()
        raise TargetError(
            f"{self.name}: no SSH answer within {self.system.boot_timeout_s:g} s (profile field "
            f"'system.boot_timeout_s'); last ssh error: {last}\nconsole (last lines):\n{self.console_tail()}"
        )

    def console_tail(self, lines: int = 25) -> str:
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError:
            return "(no console output)"
        return "\n".join(text.splitlines()[-lines:]) or "(no console output)"

    def _qemu_stderr(self) -> str:
        try:
            return (self.workdir / "qemu.stderr").read_text(errors="replace").strip()
        except OSError:
            return ""

    def monitor(self, command: str, timeout: float = 10.0) -> str:
        """One HMP monitor command (e.g. ``hostfwd_add``, ``info kvm``), its output."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.monitor_path))
            out = b""
            deadline = time.monotonic() + timeout
            while b"(qemu)" not in out and time.monotonic() < deadline:
                out += s.recv(4096)
            s.sendall(command.encode() + b"\n")
            out = b""
            while out.count(b"(qemu)") < 1 and time.monotonic() < deadline:
                chunk = s.recv(4096)
                if not chunk:
                    break
                out += chunk
        text = out.decode(errors="replace").replace("\r", "")
        lines = [ln for ln in text.split("\n") if ln and not ln.startswith("(qemu)") and command not in ln]
        return "\n".join(lines).strip()

    def _accel(self) -> str:
        try:
            return "kvm" if "enabled" in self.monitor("info kvm") else "tcg"
        except OSError:
            return "unknown"

    def forward(self, guest_port: int) -> int:
        """Forward a guest TCP port to a fresh 127.0.0.1 port on the host (e.g. the core's broker)."""
        port = _free_port()
        out = self.monitor(f"hostfwd_add net0 tcp:127.0.0.1:{port}-:{guest_port}")
        if out:
            raise TargetError(f"{self.name}: cannot forward guest port {guest_port}: {out}")
        return port

    def power_off(self) -> None:
        with self._lock:
            if self._qemu is None:
                self._on = False
                return
            if self._on:
                try:
                    self.run(["systemctl", "poweroff", "--no-block"], timeout=30)
                except InfraError:
                    pass
            self._close_master()
            self._on = False
            if not self._wait_exit(self.system.shutdown_timeout_s):
                try:
                    self.monitor("system_powerdown")
                except OSError:
                    pass
                if not self._wait_exit(30):
                    (self.workdir / "shutdown-forced").write_text("clean shutdown timed out; QEMU killed\n")
            self._stop_qemu()

    def power_cut(self) -> None:
        with self._lock:
            if self._qemu is not None and self._qemu.poll() is None:
                self._qemu.kill()
                self._qemu.wait(timeout=30)
                self.needs_fsck = True
            self._qemu = None
            self._on = False
            self._close_master()

    def _wait_exit(self, timeout: float) -> bool:
        assert self._qemu is not None
        try:
            self._qemu.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def _stop_qemu(self) -> None:
        if self._qemu is not None:
            if self._qemu.poll() is None:
                self._qemu.kill()
            self._qemu.wait(timeout=30)
        self._qemu = None
        (self.workdir / PID_FILE).unlink(missing_ok=True)

    # -- disk check -------------------------------------------------------------------------------
    def fsck(self) -> FsckResult:
        """e2fsck the raw disk while the VM is off: first as found (-fn), then repairing (-fy)."""
        if self._qemu is not None and self._qemu.poll() is None:
            raise TargetError(f"{self.name}: cannot fsck the disk of a running VM")

        def e2fsck(flag: str) -> tuple[int, str]:
            try:
                res = subprocess.run(["e2fsck", "-f", flag, str(self.disk)], capture_output=True, text=True,
                                     timeout=FSCK_TIMEOUT_S, check=False)
            except subprocess.TimeoutExpired:
                raise InfraError(f"e2fsck {flag} {self.disk}: no result in {FSCK_TIMEOUT_S:g} s") from None
            return res.returncode, (res.stdout + res.stderr).strip()

        check_rc, check_out = e2fsck("-n")
        repair_rc, repair_out = e2fsck("-y")
        result = FsckResult(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), FAULT_MODEL,
                            check_rc, check_out, repair_rc, repair_out)
        with (self.workdir / "fsck.jsonl").open("a") as fh:
            fh.write(json.dumps(asdict(result)) + "\n")
        return result

    # -- facts --------------------------------------------------------------------------------------
    def facts(self) -> Facts:
        f = super().facts()
        f.extra.update({"transport": "qemu-system", "accel": self.accel_used or "unknown",
                        "boot_s": str(self.boot_s), "machine": self.system.machine,
                        "fault_model": FAULT_MODEL})
        return f

    def close(self) -> None:
        try:
            if self._qemu is not None:
                self.power_off()
        finally:
            self._stop_qemu()
            super().close()
            import shutil

            shutil.rmtree(self.workdir, ignore_errors=True)



def qemu_processes(base: Path | None = None) -> list[tuple[int, str]]:
    """Live QEMU processes whose command line names a VM directory under ``base``."""
    root = str((base or state_dir()) / "qemu-system")
    out = processes(
        lambda cmd: os.path.basename(cmd.split(" ", 1)[0]).startswith("qemu-system") and root in cmd
    )
    return out


def gc_stale_vms(base: Path | None = None) -> list[str]:
    """Kill the QEMU and remove the directory of every VM whose owning harness process is dead."""
    import shutil

    removed: list[str] = []
    root = vm_root(base)
    procs = qemu_processes(base)
    for wd in root.iterdir():
        try:
            owner = int((wd / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if pid_alive(owner):
            continue
        for pid, cmd in procs:
            if str(wd) in cmd:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(wd, ignore_errors=True)
        removed.append(str(wd))
    return removed
