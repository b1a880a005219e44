"""Board checks on real qemu-user targets: clean profiles pass, each seeded defect fails exactly its check.

The defects are real (a BusyBox userland, a 300 MB ext4 disk, a 100 MB memory cgroup, a noexec tmpfs, ...),
built from fixtures/profiles/*.yaml and cached like any root file system, so this also proves the checks see
what a board would show rather than what the profile says.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

from harness.checks import CheckResult, run_check, run_checks
from harness.checks import system as system_checks
from harness.profiles import DeviceProfile, find_profile, load_profile_file
from harness.targets.qemu_user import QemuUserTarget

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(os.geteuid() != 0, reason="qemu-user targets need root"),
    # One xdist worker runs them all, so each profile's target is booted and checked once (board_results).
    pytest.mark.xdist_group("board-checks-on-targets"),
]

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "profiles"
#: Seeded-defect profile -> the one check it must fail.
DEFECTS = {
    "defect-busybox-ota": "ota_commands",
    "defect-no-bash": "ota_commands",
    "defect-no-ggc-user": "users",
    "defect-tmp-noexec": "tmp_exec",
    "defect-small-disk": "disk",
    "defect-small-ram": "ram",
    "defect-no-var-run": "var_run",
    "defect-no-python-lambda": "lambda_runtimes",
    "defect-kernel-config": "kernel_config",
    "defect-ota-os-pair": "os",
}
CLEAN = ["native-x86_64", "native-x86_64-v1"]
KERNEL_ROWS = {"kernel", "link_protection", "cgroups"}


def load(name: str) -> DeviceProfile:
    path = FIXTURES / f"{name}.yaml"
    return load_profile_file(path) if path.exists() else find_profile(name)


@functools.cache
def board_results(name: str) -> tuple[CheckResult, ...]:
    """All checks on a freshly powered target of profile ``name`` (once per test session)."""
    profile = load(name)
    with QemuUserTarget(profile) as target:
        target.power_on()
        return tuple(run_checks(target, profile))


def summary(results: tuple[CheckResult, ...]) -> str:
    return "\n".join(f"{r.id}: {r.status}{' (informative)' if r.informative else ''}: {r.message}"
                     for r in results)


@pytest.mark.parametrize(("name", "check_id"), DEFECTS.items(), ids=list(DEFECTS))
def test_defect_fails_exactly_its_check(name: str, check_id: str) -> None:
    results = board_results(name)
    decisive = {r.id for r in results if r.counts}  # failed or error, and not informative
    assert decisive == {check_id}, summary(results)
    failed = next(r for r in results if r.id == check_id)
    assert failed.status == "failed" and failed.evidence and failed.requirement


@pytest.mark.parametrize("name", CLEAN)
def test_clean_profile_has_no_failed_check(name: str) -> None:
    results = board_results(name)
    assert [r.id for r in results if r.counts] == [], summary(results)
    assert all(r.status != "error" for r in results), summary(results)


def test_clean_v1_profile_runs_every_v1_row() -> None:
    ran = {r.id for r in board_results("native-x86_64-v1") if r.status != "skipped"}
    assert {"var_run", "std_streams", "link_protection", "kernel_config", "cgroups", "lambda_runtimes",
            "ota_commands"} <= ran


@pytest.mark.parametrize("name", CLEAN)
def test_kernel_rows_are_informative_under_qemu_user(name: str) -> None:
    results = {r.id: r for r in board_results(name) if r.status != "skipped"}
    for check_id in KERNEL_ROWS & results.keys():
        assert results[check_id].informative, check_id
        assert "host kernel seen through qemu-user" in results[check_id].evidence
    assert {r.id for r in results.values() if r.informative} <= KERNEL_ROWS | {"kernel_config"}
    if "kernel_config" in results:  # the profile names the device's config file: authoritative
        assert not results["kernel_config"].informative


def test_kernel_config_of_the_host_is_informative() -> None:
    profile = load("native-x86_64-v1").model_copy(update={"kernel_config": None})
    with QemuUserTarget(profile) as target:
        target.power_on()
        res = run_check("kernel_config", target, profile)
    assert res.informative and res.status in ("passed", "failed", "error")
    assert "host kernel seen through qemu-user" in res.evidence


def test_real_specifics() -> None:
    """The numbers come from the device: the disk image, the cgroup limit, the tmpfs, BusyBox."""
    by = {name: {r.id: r for r in board_results(name)} for name in DEFECTS}
    assert "less than the 400 MB required" in by["defect-small-disk"]["disk"].message
    assert "100 MB available" in by["defect-small-ram"]["ram"].message
    assert "noexec" in by["defect-tmp-noexec"]["tmp_exec"].message
    assert "busybox" in by["defect-busybox-ota"]["ota_commands"].message
    assert "/bin/bash" in by["defect-no-bash"]["ota_commands"].message
    assert by["defect-no-bash"]["libc"].status == "passed"  # ldd is a bash script: getconf answered


def test_lost_target_gives_errors_not_passes() -> None:
    profile = load("native-x86_64")
    with QemuUserTarget(profile) as target:
        target.power_on()
        target.power_cut()
        results = run_checks(target, profile)
    assert {r.status for r in results} == {"error", "skipped"}
    assert all("powered off" in r.message for r in results if r.status == "error")


def test_command_timeout_becomes_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A `uname` that hangs (first on PATH) makes the arch check time out: error, never pass."""
    monkeypatch.setattr(system_checks, "CMD_TIMEOUT", 1.0)
    hang = tmp_path / "uname"
    hang.write_text("#!/bin/sh\necho partial\nexec sleep 60\n")
    profile = load("native-x86_64")
    with QemuUserTarget(profile) as target:
        target.power_on()
        target.put(hang, "/usr/local/bin/uname", mode=0o755)
        res = run_check("arch", target, profile)
        assert run_check("users", target, profile).status == "passed"  # the target survives
    assert res.status == "error" and "'uname -m' did not finish within 1 s" in res.message
    assert "partial" in res.evidence and "timed out after 1 s" in res.evidence
