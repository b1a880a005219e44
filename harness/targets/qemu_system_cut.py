"""Power cut during a write-heavy workload on a whole-VM board, then fsck of its raw disk and a second boot.

Why a VM: under qemu-user the kernel is the host's, so a cut cannot lose a page cache. Here the guest
kernel's page cache dies with QEMU (fault model ``vm-kill``); the raw disk is then checked by e2fsck on the
host before the board boots again, as a board's boot-time fsck would, and the result goes to the report.

The verdict: data the board synced before the cut (a file under the core's install root) must be intact
afterwards, the file system must be repairable (e2fsck -fy exit < 4) and the board must boot again. A board
that keeps the install root in RAM (tmpfs), or whose disk cannot be repaired, fails with the reason.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

from harness.errors import HarnessError
from harness.profiles import DeviceProfile
from harness.targets.qemu_system import FAULT_MODEL_TEXT, FsckResult, QemuSystemTarget

#: Writers of the workload: each rewrites its files in a loop, never syncing.
WRITERS = 4
FILES_PER_WRITER = 8
BLOCK_KB = 64
BLOCKS = 32
#: How long the workload runs before the cut (seconds), and the bound on waiting for it to start.
LOAD_S = 8.0
START_TIMEOUT_S = 180.0
E2FSCK_UNCORRECTED = 4


@dataclass
class CutOutcome:
    """What the cut did, for the report: verdict, message, evidence and properties."""

    passed: bool
    message: str
    evidence: list[str] = field(default_factory=list)
    fsck: FsckResult | None = None
    properties: dict[str, str] = field(default_factory=dict)


def _workload(directory: str) -> str:
    return (
        f"mkdir -p {directory} && cd {directory} && "
        f"for w in $(seq 1 {WRITERS}); do ( i=0; while :; do "
        f"dd if=/dev/urandom of=load.$w.$((i % {FILES_PER_WRITER})) bs={BLOCK_KB}k count={BLOCKS} "
        "2>/dev/null; i=$((i + 1)); done ) & done; wait"
    )


def cut_during_writes(target: QemuSystemTarget, profile: DeviceProfile) -> CutOutcome:
    """Sync a token under the install root, load the disk, cut, fsck, boot, and judge what survived."""
    root = profile.install_root.rstrip("/") or "/"
    token = secrets.token_hex(16)
    marker = f"{root}/harness-cut-marker"
    ev: list[str] = [f"fault model: {FAULT_MODEL_TEXT}"]
    target.power_on()
    res = target.run(["sh", "-c", f"mkdir -p {root} && echo {token} > {marker} && sync && df -h {root}"],
                     timeout=120)
    ev.append(res.evidence())
    if not res.ok:
        return CutOutcome(False, f"could not write the marker {marker} before the cut", ev)
    load = target.popen(["sh", "-c", _workload(f"{root}/harness-cut-load")])
    started = time.monotonic()
    count = 0
    while time.monotonic() - started < START_TIMEOUT_S:
        res = target.run(["sh", "-c", f"ls {root}/harness-cut-load | wc -l"], timeout=60)
        count = int(res.stdout.strip() or 0) if res.ok else 0
        if count >= WRITERS:
            break
        time.sleep(1.0)
    time.sleep(LOAD_S)
    ev.append(f"workload: {WRITERS} writers rewriting {FILES_PER_WRITER} files of {BLOCK_KB * BLOCKS} kB "
              f"each, never synced; {count} files seen when the load was confirmed; cut {LOAD_S:g} s later")
    target.power_cut()
    load.kill()
    load.wait(timeout=30)
    ev.append("power cut: QEMU killed (SIGKILL)")
    try:
        target.power_on()
    except HarnessError as exc:
        fsck = target.fsck_results[-1] if target.fsck_results else None
        if fsck:
            ev += [fsck.summary(), fsck.repair_output]
        return CutOutcome(False, f"the board did not boot again after the cut: {exc}", ev, fsck)
    fsck = target.fsck_results[-1] if target.fsck_results else None
    props = {"fault_model": target.fault_model}
    if fsck is None:
        return CutOutcome(False, "no fsck result was recorded after the cut", ev, None, props)
    props.update({"fsck_check_exit": str(fsck.check_exit), "fsck_repair_exit": str(fsck.repair_exit)})
    ev += [fsck.summary(), "$ e2fsck -f -n disk\n" + fsck.check_output,
           "$ e2fsck -f -y disk\n" + fsck.repair_output]
    got = target.run(["cat", marker], timeout=60)
    ev.append(got.evidence())
    target.run(["rm", "-rf", f"{root}/harness-cut-load", marker], timeout=120)
    if fsck.repair_exit >= E2FSCK_UNCORRECTED:
        return CutOutcome(False, f"the root file system was left damaged beyond repair by the cut: "
                          f"{fsck.summary()}", ev, fsck, props)
    if got.stdout.strip() != token:
        what = "is gone" if not got.ok else "has other content"
        return CutOutcome(False, f"{marker}, written and synced before the cut, {what} after it: the board "
                          f"does not keep synced data under {root} on its disk", ev, fsck, props)
    return CutOutcome(True, f"Synced data under {root} survived a power cut during writes; "
                      f"{fsck.summary()}; the board booted again.", ev, fsck, props)
