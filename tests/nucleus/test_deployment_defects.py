"""The deployment scenarios pass on the reference nucleus and fail on each seeded defect.

Each case runs the real suite (pytest, the agent in a real target) as a subprocess, like a user would, and
reads its results.json. The faithful nucleus must pass on a native and on an emulated (aarch64) profile;
with one fault flag the scenario that checks that rule must fail (exit 1) with a message that says what
broke. ``non_atomic_config_write`` is proven by the crash tests of test_persist.py instead.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nucleus_support
import pytest

pytestmark = pytest.mark.qemu
REPO = Path(__file__).resolve().parents[2]
NATIVE, EMULATED = "native-x86_64", "qemu-aarch64"
SCENARIOS = 6

#: fault flag -> (-k expression, text every failure message must contain)
DEFECTS = {
    "component_output_dropped": ("test_c1", "does not show its output"),
    "dependents_not_restarted": ("test_c2_dependency", "was not restarted when its HARD dependency"),
    "broken_rule_off": ("test_c3", "never went BROKEN"),
    "timeouts_ignored": ("test_c4", "outlived its 2 s Timeout and was not marked ERRORED"),
}


def run_suite(
    report: Path, profile: str, keyword: str = "test_", faults: tuple[str, ...] = ()
) -> tuple[int, dict[str, object], str]:
    return nucleus_support.run_suite("deployment", report, profile, keyword, faults)


@pytest.mark.parametrize("profile", [NATIVE, EMULATED])
def test_scenarios_pass_on_the_reference_nucleus(profile: str, tmp_path: Path) -> None:
    rc, data, out = run_suite(tmp_path, profile)
    assert rc == 0, out[-4000:]
    summary = data["summary"]
    assert isinstance(summary, dict) and summary["passed"] == SCENARIOS and summary["failed"] == 0, summary


@pytest.mark.parametrize("fault", sorted(DEFECTS))
def test_seeded_defect_fails_its_scenario(fault: str, tmp_path: Path) -> None:
    keyword, expected = DEFECTS[fault]
    rc, data, out = run_suite(tmp_path, NATIVE, keyword, (fault,))
    assert rc == 1, f"the scenario did not fail with --nucleus-fault {fault}:\n{out[-3000:]}"
    tests = data["tests"]
    assert isinstance(tests, list) and tests, out[-3000:]
    failed = [t for t in tests if t["outcome"] == "failed"]
    assert len(failed) == len(tests), f"not every selected scenario failed (errors are not failures): {tests}"
    for t in failed:
        assert expected in str(t["message"]), f"failure message does not say what broke: {t['message']}"


def test_unknown_fault_is_a_usage_error(tmp_path: Path) -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(REPO / "scenarios" / "deployment"),
            "-p",
            "no:cacheprovider",
            "--profile",
            NATIVE,
            "--nucleus-fault",
            "made_up",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert res.returncode == 4  # pytest usage error
    assert "unknown nucleus fault(s) made_up; allowed:" in res.stdout + res.stderr
