"""Board suite: every row of the board requirements table, on each ``--profile`` target.

A row that applies and fails fails the test with its message; an informative row (a host fact seen through
qemu-user) that fails is reported as failed-informative (xfail): visible, but not deciding the verdict.
A userland that cannot run on the board's CPU at all fails the ``arch`` row with the diagnosis; the other
rows then report ``error`` (they could not run), never a pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import pytest

from harness.checks import CHECKS, CheckResult, run_check
from harness.errors import UserlandMismatch
from harness.profiles import DeviceProfile
from harness.pytest_plugin import TargetPool
from harness.records import TestRecord


class CheckCouldNotRun(Exception):
    """The check itself could not run (reported as ``error``, never as a pass)."""


@pytest.mark.parametrize("check_id", list(CHECKS))
def test_board(
    check_id: str,
    profile: DeviceProfile,
    target_pool: TargetPool,
    record_result: Callable[[TestRecord], None],
    request: pytest.FixtureRequest,
) -> None:
    request.node.user_properties.append(("harness_test_id", check_id))
    got = target_pool.try_get(profile.name)
    check = CHECKS[check_id]
    if isinstance(got, UserlandMismatch) and check.applies(profile):
        result = check.skipped(profile, str(check.applies(profile)))
    elif isinstance(got, UserlandMismatch):
        status: Literal["failed", "error"] = "failed" if check_id == "arch" else "error"
        msg = str(got) if check_id == "arch" else f"the target cannot run commands: {got}"
        result = CheckResult(
            check_id,
            status,
            msg,
            evidence=str(got),
            requirement=check.row.requirement(profile),
            source=check.row.source(profile),
        )
    else:
        target = target_pool.get(profile.name, request.node)
        result = run_check(check_id, target, profile)
    record_result(result.to_record(profile.name))
    if result.status == "skipped":
        pytest.skip(result.message)
    if result.status == "error":
        raise CheckCouldNotRun(f"{check_id}: {result.message}")
    if result.status == "failed":
        if result.informative:
            pytest.xfail(f"informative: {result.message}")
        pytest.fail(f"{check_id}: {result.message}\n{result.evidence[-2000:]}", pytrace=False)
