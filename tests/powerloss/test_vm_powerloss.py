"""Power-loss campaigns on a whole-VM board (issue #10 item 5): the cut is a real VM kill.

On a qemu-system target the campaign asks the target for its fault model (``vm-kill``), mounts no layer,
and records the fsck of the raw disk that runs before every boot after a cut; every cut's line names the
model and the fsck result. The reference core keeps every invariant; a seeded defect still fails.

The defect's cut: ``non_atomic_config_write`` writes the deployment record in place without fsync, and
the cut comes as soon as ``deployment create`` returned (``deployment.acknowledged``). The guest's ext4
has not committed the new record yet (its journal commits every 5 s or on an fsync), so the acknowledged
deployment is gone after the VM kill; the reference core fsyncs the record before it answers. The agent's
own cut points do not catch this defect on ext4: the agent rewrites the record in place when it picks the
deployment up, and ext4's auto_da_alloc flushes a truncated-and-rewritten file on close.

The model selection and the per-cut records are unit tests on a fake target; the VM tests boot
qemu-system-x86_64 once (TCG when nested KVM is missing: about a minute a boot) for both campaigns.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from harness.errors import InputError
from harness.leaks import find_leaks
from harness.paths import state_dir
from harness.powerloss.campaign import (
    ACK_POINT,
    FSCK_INVARIANT,
    INVARIANTS,
    VM_KILL,
    Campaign,
    CampaignResult,
    Cut,
    models_for,
    resolve_model,
    run_campaign,
    unsupported_reason,
)
from harness.profiles import find_profile
from harness.targets.base import Target
from harness.targets.factory import make_target
from harness.targets.fake import FakeTarget
from harness.targets.qemu_system import FsckResult, QemuSystemTarget

SEED = 20261123
VM_PROFILE = "qemu-system-x86_64"


class FakeBoard(FakeTarget):
    """A fake target whose own cut loses the page cache, as a qemu-system target says of itself."""

    def __init__(self) -> None:
        super().__init__("fake-board")
        self.fault_model = VM_KILL
        self.fsck_results: list[FsckResult] = []


def fsck(repair_exit: int, check_exit: int = 1) -> FsckResult:
    return FsckResult("2026-11-23T00:00:00Z", VM_KILL, check_exit, "", repair_exit, "")


# -- fault model selection and records (fakes) ---------------------------------------------------------
def test_the_target_says_which_models_it_gives() -> None:
    board, chroot = FakeBoard(), FakeTarget()
    assert models_for(board) == (VM_KILL,)
    assert resolve_model(board, "power-loss") == VM_KILL
    assert resolve_model(board, VM_KILL) == VM_KILL
    with pytest.raises(InputError, match=r"fake-board: fault model 'crash' is not available .*vm-kill"):
        resolve_model(board, "crash")
    assert resolve_model(chroot, "crash") == "crash"
    with pytest.raises(InputError, match=r"'vm-kill' is not available .*allowed values crash, power-loss"):
        resolve_model(chroot, VM_KILL)
    with pytest.raises(InputError, match=r"'unplug': allowed values crash, power-loss, vm-kill"):
        resolve_model(board, "unplug")
    assert unsupported_reason(board) == ""
    assert "qemu-system" in unsupported_reason(chroot) and "qemu-user" in unsupported_reason(chroot)


def test_vm_kill_campaign_mounts_no_layer_and_refuses_operation_cuts() -> None:
    c = Campaign(FakeBoard(), model="power-loss", seed=SEED)
    try:
        assert (c.model, c.layer, c.own_cut) == (VM_KILL, None, True)
        with pytest.raises(InputError, match=r"operation cuts need the power-loss layer"):
            c.cut_once("write:config/config.tlog@1")
    finally:
        c.close()


def test_each_cut_records_its_fsck_and_an_unrepaired_disk_breaks_it() -> None:
    board = FakeBoard()
    c = Campaign(board, seed=SEED)
    try:
        board.fsck_results.append(fsck(repair_exit=1))
        cut = Cut(0, c.model, SEED, "component", point="deployment.planned", hit="deployment.planned@1")
        c._record_fsck(cut)
        assert cut.fsck_not_clean == 1 and not cut.broken
        assert "[fsck after cut (vm-kill): read-only check exit 1 (not clean)" in cut.line()
        board.fsck_results.append(fsck(repair_exit=4))
        c._record_fsck(cut)
        assert cut.broken and cut.broken[0].startswith(FSCK_INVARIANT), cut.broken
        assert len(cut.fsck) == 2
    finally:
        c.close()
    result = CampaignResult(SEED, VM_KILL, "component", 1.0, [cut])
    assert FSCK_INVARIANT in result.report().splitlines()[0]
    assert result.to_dict()["cuts"][0]["fsck"] == cut.fsck


# -- a real VM ------------------------------------------------------------------------------------------
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="building root disks needs root")


@pytest.fixture(scope="module")
def board() -> Iterator[Target]:
    """One qemu-system-x86_64 board for both campaigns (each installs the core afresh)."""
    target = make_target(find_profile(VM_PROFILE), instance="powerloss-vm")
    assert isinstance(target, QemuSystemTarget)
    try:
        yield target
    finally:
        target.close()
    leaks = [line for line in find_leaks(state_dir()) if target.workdir.name in line]
    assert not leaks, f"left behind: {leaks}"


def run(board: Target, faults: tuple[str, ...], **kw: Any) -> CampaignResult:
    c = Campaign(board, workload="component", model="power-loss", faults=faults, seed=SEED)
    try:
        result = run_campaign(c, **kw)
    finally:
        c.close()
    print(result.report())
    return result


VM_MARKS = [needs_root, pytest.mark.qemu, pytest.mark.slow, pytest.mark.xdist_group("powerloss-vm")]


@pytest.mark.parametrize("_", [pytest.param(0, marks=VM_MARKS)], ids=[VM_PROFILE])
def test_vm_reference_keeps_invariants_and_reports_vm_kill_and_fsck(board: Target, _: int) -> None:
    result = run(board, (), cuts=0, points=(ACK_POINT,))
    assert result.model == VM_KILL and result.cuts, result.report()
    for cut in result.cuts:
        assert cut.model == VM_KILL and f", {VM_KILL}, seed {SEED}]" in cut.line()
        assert cut.hit, f"the cut point was not reached: {cut.line()}"
        assert cut.fsck and "fsck after cut (vm-kill)" in cut.line(), cut.line()
        assert FSCK_INVARIANT in cut.checked and INVARIANTS[0] in cut.checked
    assert not result.broken, result.report()


@pytest.mark.parametrize("_", [pytest.param(0, marks=VM_MARKS)], ids=[VM_PROFILE])
def test_vm_seeded_defect_fails(board: Target, _: int) -> None:
    result = run(board, ("non_atomic_config_write",), cuts=0, points=(ACK_POINT,))
    assert result.broken, f"non_atomic_config_write survived a VM kill:\n{result.report()}"
    cut = result.broken[0]
    line = cut.line()
    assert f"seed {SEED}" in line and VM_KILL in line and "BROKEN: " in line and cut.fsck, line
    assert any(b.split(":")[0] in INVARIANTS for b in cut.broken), line
