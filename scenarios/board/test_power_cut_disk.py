"""Board suite, whole-VM boards: a power cut during a write-heavy workload, fsck of the raw disk, second boot.

Runs on qemu-system targets of profiles claiming feature ``power_loss`` (skipped elsewhere: under qemu-user
the kernel is the host's and a cut cannot lose a page cache). The row ``board.power_cut_disk`` carries the
fsck result (read-only check and repair, with e2fsck's output) and the fault model of the cut in its
evidence and properties. The shared target is left booted, so the other rows are not disturbed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from harness.profiles import DeviceProfile
from harness.pytest_plugin import TargetPool
from harness.records import TestRecord
from harness.targets.qemu_system import QemuSystemTarget
from harness.targets.qemu_system_cut import cut_during_writes

REQUIREMENT = ("data synced under the core's install root survives a power cut during writes; the root file "
               "system is repairable (e2fsck -fy exit < 4) and the board boots again")
SOURCE = "issue #10 (full-system boards: power cut with a real kernel and disk)"


def test_power_cut_disk(
    profile: DeviceProfile,
    target_pool: TargetPool,
    record_result: Callable[[TestRecord], None],
    request: pytest.FixtureRequest,
) -> None:
    request.node.user_properties.append(("harness_test_id", "power_cut_disk"))
    if profile.transport != "qemu-system" or "power_loss" not in profile.features:
        reason = (f"{profile.name} is not a whole-VM board claiming feature 'power_loss' (transport "
                  f"{profile.transport})")
        record_result(TestRecord("board.power_cut_disk", "board", profile.name, "skipped",
                                 requirement=REQUIREMENT, source=SOURCE, message=f"Skipped: {reason}."))
        pytest.skip(reason)
    target = target_pool.get(profile.name, request.node)
    assert isinstance(target, QemuSystemTarget)
    start = time.monotonic()
    outcome = cut_during_writes(target, profile)
    record_result(TestRecord(
        "board.power_cut_disk", "board", profile.name, "passed" if outcome.passed else "failed",
        duration_s=round(time.monotonic() - start, 1), requirement=REQUIREMENT, source=SOURCE,
        evidence="\n\n".join(outcome.evidence), message=outcome.message, properties=outcome.properties,
    ))
    if not outcome.passed:
        pytest.fail(f"power_cut_disk: {outcome.message}", pytrace=False)
