"""The registry: table order and ids, skip rules per generation and feature, errors never pass."""

from __future__ import annotations

import pytest
from fakeboard import Board, make_profile

from harness.checks import CHECKS, ROWS, CheckResult, run_check, run_checks
from harness.checks.system import kernel
from harness.errors import CommandTimeout, InputError, TargetError
from harness.profiles import DeviceProfile
from harness.targets.base import RunResult

TABLE_IDS = ["arch", "os", "disk", "ram", "kernel", "libc", "var_run", "std_streams", "link_protection",
             "kernel_config", "cgroups", "tmp_exec", "ca_trust", "java", "lambda_runtimes", "ota_commands",
             "pretest_commands", "users", "docker"]
V1_ONLY = ["var_run", "std_streams", "link_protection", "kernel_config", "cgroups", "lambda_runtimes",
           "ota_commands"]
V2_ONLY = ["tmp_exec", "pretest_commands"]


def test_checks_follow_the_table_exactly() -> None:
    assert list(CHECKS) == TABLE_IDS
    assert [r.id for r in ROWS] == TABLE_IDS
    for check_id, check in CHECKS.items():
        assert check.id == check_id and check.title


@pytest.mark.parametrize("check_id", V1_ONLY)
def test_v1_only_rows_are_skipped_on_v2(check_id: str, board: Board, v2: DeviceProfile) -> None:
    res = run_check(check_id, board.target(), v2)
    assert res.status == "skipped"
    assert "not a requirement of Greengrass V2" in res.message
    assert res.requirement.startswith("Greengrass V2") and res.source.startswith("seed 000")


@pytest.mark.parametrize("check_id", V2_ONLY)
def test_v2_only_rows_are_skipped_on_v1(check_id: str, board: Board, v1: DeviceProfile) -> None:
    res = run_check(check_id, board.target(), v1)
    assert res.status == "skipped"
    assert "not a requirement of Greengrass V1" in res.message
    assert res.source.startswith("seed 002")


@pytest.mark.parametrize(("check_id", "features", "reason"), [
    ("kernel_config", ["ota"], "'containers'"),
    ("cgroups", [], "'containers'"),
    ("java", [], "Python reference core, which needs no JVM"),
    ("lambda_runtimes", [], "no Lambda runtimes"),
    ("ota_commands", [], "'ota'"),
    ("docker", ["ota"], "'docker'"),
])
def test_unclaimed_features_are_skipped_with_the_reason(check_id: str, features: list[str], reason: str,
                                                        board: Board) -> None:
    target = board.target()
    res = run_check(check_id, target, make_profile("v1", features=features))
    assert res.status == "skipped" and reason in res.message
    assert target.calls == [] and target.reads == []  # a skipped row touches nothing on the device


def test_java_skip_reason_applies_to_v2_too(board: Board, v2: DeviceProfile) -> None:
    res = run_check("java", board.target(), v2)
    assert res.status == "skipped" and "no JVM" in res.message


def test_healthy_board_passes_every_applicable_check_v1(board: Board) -> None:
    profile = make_profile("v1", features=["ota", "containers", "lambda_runtimes"],
                           lambda_runtimes=["python3.8"])
    results = run_checks(board.target(), profile)
    assert [r.id for r in results] == TABLE_IDS
    bad = [(r.id, r.status, r.message) for r in results if r.status not in ("passed", "skipped")]
    assert bad == []
    skipped = {r.id for r in results if r.status == "skipped"}
    assert skipped == {"tmp_exec", "pretest_commands", "java", "docker"}


def test_healthy_board_passes_every_applicable_check_v2(board: Board, v2: DeviceProfile) -> None:
    results = run_checks(board.target(), v2)
    assert {r.id for r in results if r.status == "passed"} == {
        "arch", "os", "disk", "ram", "kernel", "libc", "tmp_exec", "ca_trust", "pretest_commands", "users"}
    assert all(r.status == "skipped" for r in results if r.id not in {
        "arch", "os", "disk", "ram", "kernel", "libc", "tmp_exec", "ca_trust", "pretest_commands", "users"})


def test_every_result_carries_requirement_source_and_evidence(board: Board, v1: DeviceProfile) -> None:
    for res in run_checks(board.target(), v1):
        assert res.requirement and res.source.startswith("seed 00"), res
        assert res.message.endswith("."), res
        if res.status != "skipped":
            assert res.evidence.strip(), res


def test_evidence_shows_commands_and_output(board: Board, v2: DeviceProfile) -> None:
    res = run_check("arch", board.target(), v2)
    assert "$ uname -m\nx86_64\n[exit 0]" in res.evidence


def test_files_read_are_evidence(board: Board, v2: DeviceProfile) -> None:
    res = run_check("users", board.target(), v2)
    assert "read /etc/passwd" in res.evidence and "ggc_user:x:999" in res.evidence


def test_timeout_becomes_error_with_the_command(board: Board, v2: DeviceProfile) -> None:
    def hang(argv: list[str]) -> RunResult | BaseException | None:
        if argv[:1] == ["df"]:
            return CommandTimeout(argv, 60.0, "partial output", "")
        return None

    board.extra.append(hang)
    res = run_check("disk", board.target(), v2)
    assert res.status == "error"
    assert "df -Pk /greengrass" in res.message and "60 s" in res.message
    assert "partial output" in res.evidence and "timed out after 60 s" in res.evidence
    assert res.requirement and res.source


def test_unexpected_exception_becomes_error_never_pass(board: Board, v2: DeviceProfile) -> None:
    board.extra.append(lambda argv: RuntimeError("the board caught fire") if argv[:1] == ["uname"] else None)
    res = run_check("arch", board.target(), v2)
    assert res.status == "error"
    assert "RuntimeError: the board caught fire" in res.message
    assert "traceback" in res.evidence


def test_lost_target_becomes_error(board: Board, v2: DeviceProfile) -> None:
    target = board.target()
    target.power_off()
    results = run_checks(target, v2)
    assert {r.status for r in results} <= {"error", "skipped"}
    assert all("powered off" in r.message for r in results if r.status == "error")


def test_unknown_check_id_is_an_input_error(board: Board, v2: DeviceProfile) -> None:
    with pytest.raises(InputError, match=r"unknown board check 'nope'.*arch"):
        run_check("nope", board.target(), v2)


def test_direct_call_applies_skip_rules_and_records_evidence(board: Board, v2: DeviceProfile) -> None:
    res = kernel(board.target(), v2)
    assert res.id == "kernel" and res.status == "passed" and "$ uname -r" in res.evidence
    board.extra.append(lambda argv: TargetError("gone"))
    with pytest.raises(TargetError):  # only run_check turns exceptions into results
        kernel(board.target(), v2)


def test_result_to_record() -> None:
    res = CheckResult("ota_commands", "failed", "x.", "ev", "req", "seed 002", duration_s=0.5)
    rec = res.to_record("qemu-aarch64")
    assert rec.id == "board.ota_commands" and rec.suite == "board" and rec.outcome == "failed"
    assert rec.requirement == "req" and rec.source == "seed 002" and rec.required
    assert res.counts
    assert not CheckResult("kernel", "failed", "x.", informative=True).counts
