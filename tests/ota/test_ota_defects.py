"""The OTA scenarios pass on the reference core and fail on each seeded defect.

Each case runs the real suite (pytest, the core in a real target) as a subprocess, like a user would, and
reads its results.json (``nucleus_support.run_suite``, shared with the deployment defects). With one
fault flag, the scenario that checks that rule must fail (exit 1) with a message that says what broke.
``loader_counts_no_tries`` (a boot loop: the scenario would wait for its whole timeout) and
``non_atomic_launch_switch`` (needs a cut) are proven on the host (test_update_on_host.py) and by the
power-loss suite.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from nucleus_support import run_suite

pytestmark = pytest.mark.qemu
NATIVE = "native-x86_64"
SCENARIOS = 12

#: fault flag -> (-k expression, text every failure message must contain)
DEFECTS = {
    "rollback_disabled": ("test_o2_new_version_fails_to_start", "expected FAILED/FAILED_ROLLBACK_COMPLETE"),
    "health_check_always_passes": (
        "test_o2_new_version_fails_health_check",
        "ended SUCCEEDED/SUCCESSFUL, expected FAILED/FAILED_ROLLBACK_COMPLETE",
    ),
    "update_scripts_unchecked": (
        "test_o3 and (not_root_owned or group_executable)",
        "ended SUCCEEDED/SUCCEEDED, expected FAILED/FAILED",
    ),
    "ota_requirements_unchecked": ("test_o4", "expected REJECTED/REJECTED"),
    "broker_not_restarted": ("test_o6", "clients reconnected after the update"),
    "downgrade_unchecked": ("test_o5", "expected FAILED/FAILED_NO_STATE_CHANGE"),
}


def test_ota_scenarios_pass_on_the_reference_core(tmp_path: Path) -> None:
    rc, data, out = run_suite("ota", tmp_path, NATIVE)
    assert rc == 0, out[-4000:]
    summary = data["summary"]
    assert isinstance(summary, dict) and summary["passed"] == SCENARIOS and summary["failed"] == 0, summary
    rows = [t for t in data["tests"] if isinstance(t, dict)]  # type: ignore[union-attr]
    for row in rows:
        props = row.get("properties") or {}
        assert any(k.endswith("version_before") for k in props), f"{row['id']}: no update row: {props}"
        assert any(k.endswith("unavailable_s") for k in props), f"{row['id']}: no unavailable time: {props}"
    o6 = [r for r in rows if "o6" in str(r["id"])]
    assert o6 and "lost during the update window" in str(o6[0]["properties"]), o6


@pytest.mark.parametrize("fault", sorted(DEFECTS))
def test_seeded_defect_fails_its_scenario(fault: str, tmp_path: Path) -> None:
    keyword, expected = DEFECTS[fault]
    rc, data, out = run_suite("ota", tmp_path, NATIVE, keyword, (fault,))
    assert rc == 1, f"the scenario did not fail with --nucleus-fault {fault}:\n{out[-3000:]}"
    tests = data["tests"]
    assert isinstance(tests, list) and tests, out[-3000:]
    failed = [t for t in tests if t["outcome"] == "failed"]
    assert len(failed) == len(tests), f"not every selected scenario failed (errors are not failures): {tests}"
    for t in failed:
        assert expected in str(t["message"]), f"failure message does not say what broke: {t['message']}"
