"""var_run, std_streams, tmp_exec, link_protection, kernel_config and cgroups on scripted boards."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from fakeboard import FULL_KERNEL_CONFIG, MOUNTS, Board, make_profile

from harness.checks import run_check
from harness.checks.filesystem import mount_of
from harness.checks.kernel import parse_kernel_config, profile_kernel_config
from harness.profiles import DeviceProfile, load_profile_file

CONTAINERS = make_profile("v1", features=["containers"])


def test_var_run(board: Board, v1: DeviceProfile) -> None:
    assert run_check("var_run", board.target(), v1).status == "passed"
    board.dirs.discard("/var/run")
    res = run_check("var_run", board.target(), v1)
    assert res.status == "failed" and "/var/run is missing" in res.message
    assert "$ test -d /var/run" in res.evidence


def test_std_streams(board: Board, v1: DeviceProfile) -> None:
    assert run_check("std_streams", board.target(), v1).status == "passed"
    board.devices.discard("/dev/stderr")
    res = run_check("std_streams", board.target(), v1)
    assert res.status == "failed" and "1 of 3" in res.message and "/dev/stderr" in res.message


def test_tmp_exec_runs_a_script(board: Board, v2: DeviceProfile) -> None:
    res = run_check("tmp_exec", board.target(), v2)
    assert res.status == "passed" and "/tmp lives on the ext4 mounted at /" in res.message


def test_tmp_noexec_fails_and_shows_mount_options(board: Board, v2: DeviceProfile) -> None:
    board.tmp_exec = False
    board.files["/proc/mounts"] = MOUNTS + "tmpfs /tmp tmpfs rw,nosuid,nodev,noexec,relatime 0 0\n"
    res = run_check("tmp_exec", board.target(), v2)
    assert res.status == "failed"
    assert "noexec" in res.message
    assert "/tmp is a tmpfs mounted rw,nosuid,nodev,noexec,relatime" in res.message
    assert "Permission denied" in res.evidence


def test_tmp_exec_failure_without_noexec_still_fails(board: Board, v2: DeviceProfile) -> None:
    board.tmp_exec = False
    res = run_check("tmp_exec", board.target(), v2)
    assert res.status == "failed" and "exit status 126" in res.message


def test_mount_of_takes_the_last_longest_mount() -> None:
    mounts = "/dev/a / ext4 rw 0 0\ntmpfs /tmp tmpfs rw 0 0\ntmpfs /tmp tmpfs rw,noexec 0 0\n"
    assert mount_of("/tmp", mounts) == ("/tmp", "tmpfs", "rw,noexec")
    assert mount_of("/tmpfoo", mounts) == ("/", "ext4", "rw")


# -- link protection ----------------------------------------------------------------------------------


def test_link_protection(board: Board, v1: DeviceProfile) -> None:
    assert run_check("link_protection", board.target(), v1).status == "passed"
    board.files["/proc/sys/fs/protected_symlinks"] = "0\n"
    res = run_check("link_protection", board.target(), v1)
    assert res.status == "failed" and "fs.protected_symlinks is 0" in res.message and not res.informative


def test_link_protection_is_informative_under_qemu_user(board: Board, v1: DeviceProfile) -> None:
    board.kernel_is_host = True
    res = run_check("link_protection", board.target(), v1)
    assert res.informative and "host kernel seen through qemu-user" in res.evidence


# -- kernel config ------------------------------------------------------------------------------------


def test_kernel_config_from_proc_config_gz(board: Board) -> None:
    res = run_check("kernel_config", board.target(), CONTAINERS)
    assert res.status == "passed" and "All 15" in res.message and "/proc/config.gz" in res.message


def test_kernel_config_missing_options_are_named(board: Board) -> None:
    assert board.proc_config is not None
    board.proc_config = board.proc_config.replace("CONFIG_OVERLAY_FS=y", "# CONFIG_OVERLAY_FS is not set")
    board.proc_config = board.proc_config.replace("CONFIG_KEYS=y\n", "")
    res = run_check("kernel_config", board.target(), CONTAINERS)
    assert res.status == "failed" and "2 of 15" in res.message
    assert "CONFIG_OVERLAY_FS" in res.message and "CONFIG_KEYS" in res.message
    assert "CONFIG_OVERLAY_FS=n" in res.evidence and "CONFIG_KEYS (absent)" in res.evidence


def test_kernel_config_modules_count_as_enabled() -> None:
    assert parse_kernel_config("CONFIG_OVERLAY_FS=m\n# CONFIG_KEYS is not set\n") == {
        "CONFIG_OVERLAY_FS": "m", "CONFIG_KEYS": "n"}


def test_kernel_config_falls_back_to_boot(board: Board) -> None:
    board.proc_config = None
    board.files["/boot/config-6.1.0-18-amd64"] = FULL_KERNEL_CONFIG
    res = run_check("kernel_config", board.target(), CONTAINERS)
    assert res.status == "passed" and "/boot/config-6.1.0-18-amd64" in res.message


def test_kernel_config_nowhere_is_error(board: Board) -> None:
    board.proc_config = None
    res = run_check("kernel_config", board.target(), CONTAINERS)
    assert res.status == "error" and "kernel_config" in res.message


def test_kernel_config_under_qemu_user_is_informative(board: Board) -> None:
    board.kernel_is_host = True
    res = run_check("kernel_config", board.target(), CONTAINERS)
    assert res.informative and "host kernel seen through qemu-user" in res.evidence


def _profile_with_config(tmp_path: Path, config_ref: str) -> DeviceProfile:
    path = tmp_path / "board-x.yaml"
    path.write_text("name: board-x\narch: x86_64\ntransport: local\ngreengrass: v1\nfeatures: [containers]\n"
                    f"kernel_config: {config_ref}\n")
    return load_profile_file(path)


def test_profile_kernel_config_file_is_authoritative(board: Board, tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "dev.config").write_text(FULL_KERNEL_CONFIG.replace("CONFIG_USER_NS=y", ""))
    profile = _profile_with_config(tmp_path, "configs/dev.config")
    assert profile_kernel_config(profile) == tmp_path / "configs" / "dev.config"
    board.kernel_is_host = True  # even under qemu-user the named file is the device's own kernel
    target = board.target()
    res = run_check("kernel_config", target, profile)
    assert res.status == "failed" and not res.informative and "CONFIG_USER_NS" in res.message
    assert "host kernel" not in res.evidence and str(tmp_path / "configs" / "dev.config") in res.evidence
    assert target.calls == []  # nothing asked of the device


def test_profile_kernel_config_may_be_gzipped(board: Board, tmp_path: Path) -> None:
    (tmp_path / "dev.config.gz").write_bytes(gzip.compress(FULL_KERNEL_CONFIG.encode()))
    res = run_check("kernel_config", board.target(), _profile_with_config(tmp_path, "dev.config.gz"))
    assert res.status == "passed"


def test_profile_kernel_config_missing_file_is_error(board: Board, tmp_path: Path) -> None:
    res = run_check("kernel_config", board.target(), _profile_with_config(tmp_path, "nope.config"))
    assert res.status == "error" and "nope.config" in res.message


# -- cgroups -----------------------------------------------------------------------------------------


def test_cgroups_v1_mounted(board: Board) -> None:
    res = run_check("cgroups", board.target(), CONTAINERS)
    assert res.status == "passed" and "memory at /sys/fs/cgroup/memory" in res.message


def test_cgroups_v2_only_fails(board: Board) -> None:
    board.files["/proc/mounts"] = "/dev/root / ext4 rw 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n"
    res = run_check("cgroups", board.target(), CONTAINERS)
    assert res.status == "failed" and "only cgroup v2 is mounted" in res.message


@pytest.mark.parametrize("controller", ["memory", "devices"])
def test_cgroups_disabled_controller_fails(board: Board, controller: str) -> None:
    rows = [line.split("\t") for line in board.files["/proc/cgroups"].splitlines()]
    board.files["/proc/cgroups"] = "\n".join(
        "\t".join([*r[:3], "0"] if r[0] == controller else r) for r in rows) + "\n"
    res = run_check("cgroups", board.target(), CONTAINERS)
    assert res.status == "failed" and f"{controller} is not enabled" in res.message
