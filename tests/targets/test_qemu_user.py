"""The qemu-user target on all four profiles, with real QEMU and real root file systems."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.errors import CommandTimeout, TargetError
from harness.targets.qemu_user import QemuUserTarget

pytestmark = pytest.mark.qemu
EMULATED = ["qemu-armv6l", "qemu-armv7l", "qemu-aarch64", "native-x86_64"]
EXPECTED_MACHINE = {
    "qemu-armv6l": "armv6l",
    "qemu-armv7l": "armv7l",
    "qemu-aarch64": "aarch64",
    "native-x86_64": "x86_64",
}
#: ELF e_machine of each profile's python3 (ARM=40, AArch64=183, x86-64=62): proves it is the userland's own.
EXPECTED_ELF = {"qemu-armv6l": 40, "qemu-armv7l": 40, "qemu-aarch64": 183, "native-x86_64": 62}

Make = Callable[[str], QemuUserTarget]


def harness(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("name", EMULATED)
def test_exec_uname_reports_profile_machine(name: str) -> None:
    res = harness("exec", "--profile", name, "--", "uname", "-m")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == EXPECTED_MACHINE[name]


@pytest.mark.parametrize("name", EMULATED)
def test_python3_is_the_userlands_own(name: str, make_target: Make) -> None:
    t = make_target(name)
    t.power_on()
    code = (
        "import sys, platform; d = open(sys.executable, 'rb').read(20); "
        "print(platform.machine(), int.from_bytes(d[18:20], 'little'))"
    )
    res = t.run(["python3", "-c", code], timeout=120)
    assert res.ok, res.evidence()
    machine, elf = res.stdout.split()
    assert machine == EXPECTED_MACHINE[name]
    assert int(elf) == EXPECTED_ELF[name]


def test_exec_exit_status_and_streaming() -> None:
    res = harness("exec", "--profile", "native-x86_64", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert res.returncode == 7
    assert res.stdout == "out\n" and res.stderr == "err\n"


def test_armhf_userland_on_armv6_cpu_is_diagnosed() -> None:
    start = time.monotonic()
    res = harness("exec", "--profile", "qemu-armv6l-armhf", "--", "uname", "-m", timeout=1200)
    assert res.returncode == 3, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert "armhf userland" in res.stderr and "ARMv7" in res.stderr
    assert "Illegal instruction" in res.stderr and "armel" in res.stderr
    assert time.monotonic() - start < 1100


def _alive(pids: list[int]) -> list[int]:
    return [p for p in pids if Path(f"/proc/{p}").exists()]


@pytest.mark.parametrize("name", ["native-x86_64", "qemu-armv7l"])
def test_power_cut_leaves_no_process_and_power_on_works(name: str, make_target: Make) -> None:
    t = make_target(name)
    t.power_on()
    script = "sleep 1000 & sleep 1000 & (sleep 1000 &); trap '' TERM; sleep 1000"
    proc = t.popen(["sh", "-c", script])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ps = t.run(["sh", "-c", "ps -e -o comm= | grep -c '^sleep'"], timeout=60)
        if ps.stdout.strip() == "4":
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"process tree did not start: {ps.evidence()}")
    pids = t.cgroup.pids()
    assert len(pids) >= 6  # init, unshare, the shell, four sleeps (and nsenter parents)
    t.power_cut()
    proc.wait(timeout=10)
    assert _alive(pids) == [], "processes survived the power cut"
    assert t.cgroup.pids() == []
    t.power_on()
    assert t.run(["sh", "-c", "ps -e -o comm= | grep -c '^sleep' || true"]).stdout.strip() == "0"
    assert t.run(["true"]).ok


def test_disk_survives_power_cut_and_is_fresh_per_target(make_target: Make) -> None:
    t = make_target("native-x86_64")
    t.power_on()
    assert t.run(["sh", "-c", "echo kept > /root/state && sync"]).ok
    t.power_cut()
    t.power_on()
    assert t.read_text("/root/state") == "kept\n"
    other = make_target("native-x86_64")
    other.power_on()
    assert other.read_text("/root/state") is None


def test_memory_limit_is_enforced(make_target: Make) -> None:
    t = make_target("tiny-x86_64")
    t.power_on()
    below = t.run(["python3", "-c", "b = b'x' * (40 << 20); print(len(b))"], timeout=120)
    assert below.ok, below.evidence()
    above = t.run(["python3", "-c", "b = b'x' * (200 << 20); print(len(b))"], timeout=120)
    assert above.exit_status == 137, above.evidence()  # SIGKILL from the cgroup's OOM killer


def test_memory_limit_is_enforced_under_emulation(make_target: Make) -> None:
    t = make_target("qemu-armv6l")  # 512 MB board
    t.power_on()
    above = t.run(["python3", "-c", "b = b'x' * (600 << 20); print(len(b))"], timeout=300)
    assert above.exit_status == 137, above.evidence()


def test_disk_limit_is_a_real_filesystem(make_target: Make) -> None:
    t = make_target("tiny-x86_64")
    t.power_on()
    df = t.run(["df", "-Pk", "/"])
    size_kb = int(df.stdout.splitlines()[1].split()[1])
    assert 100_000 < size_kb <= 128 * 1024, df.evidence()
    fill = t.run(["sh", "-c", "dd if=/dev/zero of=/root/fill bs=1M count=200 2>&1; echo rc=$?"], timeout=120)
    assert "No space left on device" in fill.stdout, fill.evidence()


def test_files_in_and_out_stay_inside_the_root(make_target: Make, tmp_path: Path) -> None:
    t = make_target("native-x86_64")
    t.power_on()
    src = tmp_path / "in.txt"
    src.write_text("payload")
    t.put(src, "/var/run/harness-probe", mode=0o600)  # /var/run -> /run, inside the target
    assert not Path("/run/harness-probe").exists()
    assert t.run(["cat", "/run/harness-probe"]).stdout == "payload"
    t.get("/etc/os-release", tmp_path / "os-release")
    assert "Debian" in (tmp_path / "os-release").read_text()


def test_command_timeout_shows_tail(make_target: Make) -> None:
    t = make_target("native-x86_64")
    t.power_on()
    with pytest.raises(CommandTimeout, match="last output:\nbefore-hang"):
        t.run(["sh", "-c", "echo before-hang; sleep 100"], timeout=1.5)


def test_facts(make_target: Make) -> None:
    t = make_target("qemu-aarch64")
    t.power_on()
    f = t.facts()
    assert f.machine == "aarch64" and f.kernel_is_host
    assert f.libc.startswith("glibc 2.")
    assert f.memory_limit_kb == 2048 * 1024 and f.effective_memory_kb == 2048 * 1024


def test_commands_on_a_powered_off_target_fail_clearly(make_target: Make) -> None:
    t = make_target("native-x86_64")
    with pytest.raises(TargetError, match="powered off"):
        t.run(["true"])


def _spawn(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )


def test_target_dies_with_a_killed_harness() -> None:
    """SIGKILL of the harness: the lifeline pipe closes and the target's init pulls its own plug."""
    code = (
        "from harness.profiles import find_profile\n"
        "from harness.targets.qemu_user import QemuUserTarget\n"
        "t = QemuUserTarget(find_profile('native-x86_64')); t.power_on()\n"
        "t.popen(['sleep', '1000'])\n"
        "import time; time.sleep(0.5)\n"
        "print(t.workdir, t.cgroup.path, ' '.join(map(str, t.cgroup.pids())), flush=True)\n"
        "time.sleep(1000)\n"
    )
    proc = _spawn(code)
    assert proc.stdout is not None
    workdir, cgroup, *pid_words = proc.stdout.readline().split()
    pids = [int(p) for p in pid_words]
    assert pids
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 15
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _alive(pids) == []
    # the next harness collects the dead one's directory and cgroup (this call, or a target another test
    # worker created meanwhile: both run the same collection)
    from harness.leaks import gc_stale_targets

    gc_stale_targets()
    assert not Path(workdir).exists() and not Path(cgroup).exists()


def test_ctrl_c_on_exec_cleans_up() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "exec",
            "--profile",
            "native-x86_64",
            "--",
            "sh",
            "-c",
            "echo started; exec sleep 1000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    proc.send_signal(2)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err
