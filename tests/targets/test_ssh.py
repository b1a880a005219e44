"""The SSH transport against a real OpenSSH server on loopback, powered through external commands.

The "board" is an sshd that is PID 1 of its own PID namespace: the power driver's cut command kills it,
which kills every session at once, as pulling a board's plug would.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import TargetError
from harness.profiles import DeviceProfile
from harness.targets.ssh import SshTarget

pytestmark = pytest.mark.skipif(not Path("/usr/sbin/sshd").exists(), reason="openssh-server not installed")


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def board(tmp_path: Path) -> Iterator[SshTarget]:
    for name in ("hostkey", "id"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)],
            check=True,
            timeout=30,
        )
    shutil.copy(tmp_path / "id.pub", tmp_path / "authorized_keys")
    port = _free_port()
    cfg = tmp_path / "sshd_config"
    cfg.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp_path}/hostkey\n"
        f"AuthorizedKeysFile {tmp_path}/authorized_keys\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        f"PidFile {tmp_path}/sshd.pid\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    pidfile = tmp_path / "power.pid"
    on = [
        "sh",
        "-c",
        f"setsid unshare --pid --fork --kill-child /usr/sbin/sshd -D -e -f {cfg} "
        f"> {tmp_path}/sshd.log 2>&1 < /dev/null & echo $! > {pidfile}",
    ]
    cut = ["sh", "-c", f"kill -KILL $(cat {pidfile})"]
    off = ["sh", "-c", f"kill -TERM $(cat {pidfile})"]
    profile = DeviceProfile.model_validate(
        {
            "name": "loopback-ssh",
            "arch": platform.machine(),
            "transport": "ssh",
            "ssh": {
                "host": "127.0.0.1",
                "port": port,
                "user": "root",
                "key_file": str(tmp_path / "id"),
                "options": ["ConnectTimeout=5"],
            },
            "power": {
                "driver": "command",
                "cmd_on": on,
                "cmd_off": off,
                "cmd_cut": cut,
                "boot_timeout_s": 30,
            },
        }
    )
    target = SshTarget(profile)
    try:
        yield target
    finally:
        target.close()
        if pidfile.exists():
            subprocess.run(cut, timeout=30, check=False, capture_output=True)


def test_runs_argv_exactly(board: SshTarget) -> None:
    board.power_on()
    assert board.run(["uname", "-m"]).stdout.strip() == platform.machine()
    tricky = ["a b", "c'd", "$HOME", "*", '"q"', "x;y"]
    res = board.run(["printf", "%s|", *tricky])
    assert res.stdout == "|".join(tricky) + "|"
    res = board.run(
        ["sh", "-c", 'echo "$GREETING from $(pwd)"; exit 3'], env={"GREETING": "hi there"}, cwd="/tmp"
    )
    assert res.stdout == "hi there from /tmp\n" and res.exit_status == 3


def test_files_round_trip(board: SshTarget, tmp_path: Path) -> None:
    board.power_on()
    src = tmp_path / "payload.bin"
    src.write_bytes(os.urandom(100_000))
    remote = str(tmp_path / "remote dir" / "copy.bin")
    board.put(src, remote, mode=0o600)
    assert (os.stat(remote).st_mode & 0o777) == 0o600
    board.get(remote, tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()


def test_power_cut_kills_sessions_and_power_on_recovers(board: SshTarget, tmp_path: Path) -> None:
    board.power_on()
    token = f"{time.time() % 1000:.6f}"  # a unique duration identifies the process from the host
    board.run(["sh", "-c", f"setsid sleep 1{token} > /dev/null 2>&1 < /dev/null &"], timeout=30)
    pids = [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline(p) == f"sleep 1{token}"]
    assert len(pids) == 1
    pid = pids[0]
    board.power_cut()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists(), "a process of the board survived the power cut"
    with pytest.raises(TargetError, match="powered off"):
        board.run(["true"])
    board.power_on()
    assert board.run(["true"]).ok


def test_unreachable_board_times_out_clearly(tmp_path: Path) -> None:
    profile = DeviceProfile.model_validate(
        {
            "name": "nobody",
            "arch": "aarch64",
            "transport": "ssh",
            "ssh": {"host": "127.0.0.1", "port": _free_port(), "connect_timeout_s": 2},
            "power": {"driver": "none", "boot_timeout_s": 3},
        }
    )
    target = SshTarget(profile)
    try:
        with pytest.raises(TargetError, match="no SSH answer"):
            target.power_on()
        with pytest.raises(TargetError, match="no power control"):
            target.power_cut()
    finally:
        target.close()
