"""disk and ram: the generation's threshold applied at the exact boundary."""

from __future__ import annotations

import pytest
from fakeboard import Board, make_profile

from harness.checks import run_check
from harness.checks.resources import parse_df
from harness.profiles import DeviceProfile

MB = 1024


@pytest.mark.parametrize(("greengrass", "features", "need_mb"), [
    ("v1", [], 128), ("v1", ["ota"], 400), ("v2", [], 256), ("v2", ["ota"], 256),
])
def test_disk_threshold(board: Board, greengrass: str, features: list[str], need_mb: int) -> None:
    profile = make_profile(greengrass, features=features)
    board.df = {"/": (need_mb * MB, "/")}
    res = run_check("disk", board.target(), profile)
    assert res.status == "passed", res.message
    assert f"{need_mb} MB" in res.requirement and f"{need_mb} MB required" in res.message
    board.df = {"/": (need_mb * MB - 1, "/")}
    res = run_check("disk", board.target(), profile)
    assert res.status == "failed" and f"{need_mb - 1} MB free" in res.message


def test_disk_with_ota_cites_seed_004(board: Board) -> None:
    res = run_check("disk", board.target(), make_profile("v1", features=["ota"]))
    assert "seed 004" in res.source and "seed 002" in res.source


def test_disk_uses_the_install_root_when_it_exists(board: Board) -> None:
    board.df = {"/opt/gg": (300 * MB, "/opt"), "/": (10 * MB, "/")}
    res = run_check("disk", board.target(), make_profile("v2", install_root="/opt/gg"))
    assert res.status == "passed" and "on /opt/gg," in res.message


def test_disk_falls_back_to_the_nearest_parent(board: Board) -> None:
    board.df = {"/data": (500 * MB, "/data"), "/": (10 * MB, "/")}
    res = run_check("disk", board.target(), make_profile("v2", install_root="/data/greengrass/v2"))
    assert res.status == "passed"
    assert "/data (nearest parent of /data/greengrass/v2)" in res.message
    assert "$ df -Pk /data/greengrass/v2" in res.evidence and "$ df -Pk /data\n" in res.evidence


def test_disk_without_df_is_error(board: Board, v2: DeviceProfile) -> None:
    board.df = {}
    assert run_check("disk", board.target(), v2).status == "error"


def test_disk_is_informative_on_qemu_user_without_a_disk_image(board: Board) -> None:
    board.kernel_is_host = True
    res = run_check("disk", board.target(), make_profile("v2"))
    assert res.informative and "host's free space" in res.evidence
    res = run_check("disk", board.target(), make_profile("v2", resources={"disk_mb": 512}))
    assert not res.informative


def test_parse_df_handles_spaces_in_mount_point() -> None:
    out = "Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/sda1 1000 10 990 1% /mnt/my disk\n"
    assert parse_df(out) == (990, "/mnt/my disk")
    assert parse_df("garbage") is None


@pytest.mark.parametrize(("greengrass", "features", "need_mb"), [
    ("v1", [], 128), ("v1", ["stream_manager"], 198), ("v2", [], 96),
])
def test_ram_threshold(board: Board, greengrass: str, features: list[str], need_mb: int) -> None:
    profile = make_profile(greengrass, features=features)
    board.memory_limit_kb = need_mb * MB
    res = run_check("ram", board.target(), profile)
    assert res.status == "passed" and f"{need_mb} MB" in res.requirement
    board.memory_limit_kb = need_mb * MB - 1
    res = run_check("ram", board.target(), profile)
    assert res.status == "failed" and f"{need_mb} MB required" in res.message


def test_ram_limit_counts_over_host_memtotal_under_qemu_user(board: Board, v1: DeviceProfile) -> None:
    board.kernel_is_host = True
    board.mem_total_kb = 16 * 1024 * MB
    board.memory_limit_kb = 100 * MB
    res = run_check("ram", board.target(), v1)
    assert res.status == "failed" and not res.informative
    assert "100 MB" in res.message and "enforced memory limit" in res.message
    assert "the memory limit the target enforces" in res.evidence and "host's" in res.evidence


def test_ram_without_limit_under_qemu_user_is_informative(board: Board, v1: DeviceProfile) -> None:
    board.kernel_is_host = True
    res = run_check("ram", board.target(), v1)
    assert res.status == "passed" and res.informative and "MemTotal" in res.message


def test_ram_memtotal_on_a_real_board(board: Board, v2: DeviceProfile) -> None:
    board.mem_total_kb = 512 * MB
    res = run_check("ram", board.target(), v2)
    assert res.status == "passed" and not res.informative and "512 MB" in res.message
