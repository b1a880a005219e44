"""Power-loss campaign (issue #8): >= 100 random update-and-cut runs per profile, figures for the README.

    python bench/bench_powerloss.py --profile native-x86_64 --cuts 100 [--workload component|nucleus|rollback]
        [--model power-loss|crash] [--seed S] [--fault non_atomic_config_write] [--json out.json]

Prints every cut (time, seed, fault model, invariants broken, fsck result on a VM), then per profile: cuts,
broken cuts, the update duration and wall time per cut, and against the peer measured in the same run (the
crash model on the same profile, ``--peer-cuts`` cuts): what the write-back cache layer costs per update and
per cut. Targets come from the target factory: on a qemu-system profile the model is the board's own cut,
vm-kill (no crash peer there; the line counts the fsck checks that found the disk not clean).
Exit 1 if an invariant broke (expected with --fault), 2 on bad input, 3 if the run could not complete.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from harness.core.nucleus.device.faults import FAULTS
from harness.errors import HarnessError, InputError
from harness.powerloss.campaign import (
    MODELS,
    WORKLOADS,
    Campaign,
    CampaignResult,
    run_campaign,
    unsupported_reason,
)
from harness.profiles import find_profile
from harness.targets.base import Target
from harness.targets.factory import make_target
from harness.targets.qemu_user import QemuUserTarget


def own_target(profile: str, what: str) -> Target:
    """The profile's target from the factory, refused with the reason when no campaign can run on it."""
    prof = find_profile(profile)
    target = make_target(prof, instance=f"{profile}-bench-powerloss{what}")
    reason = unsupported_reason(target)
    if reason:
        target.close()
        raise InputError(f"{prof.source}: field transport is {prof.transport!r}: {reason}")
    return target


def one(
    profile: str, workload: str, model: str, cuts: int, seed: int | None, faults: tuple[str, ...]
) -> tuple[CampaignResult, float]:
    target = own_target(profile, "")
    try:
        campaign = Campaign(target, workload=workload, model=model, faults=faults, seed=seed)
    except InputError as exc:
        target.close()
        raise InputError(f"--model {model} --workload {workload}: {exc}") from None
    campaign.on_cut = lambda cut: print(f"{profile}: {cut.line()}", flush=True)
    began = time.monotonic()
    try:
        result = run_campaign(campaign, cuts, second_cuts=cuts // 10)
    finally:
        campaign.close()
        target.close()
    return result, time.monotonic() - began


IO_LOOP = r"""
import os, sys, time
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d, exist_ok=True)
t = time.monotonic()
for i in range(n):
    p = os.path.join(d, "f%d" % (i % 50))
    fd = os.open(p + "+", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, b"x" * 1024)
    os.fsync(fd)
    os.close(fd)
    os.replace(p + "+", p)
    dfd = os.open(d, os.O_RDONLY)
    os.fsync(dfd)
    os.close(dfd)
print(time.monotonic() - t)
"""


def io_bench(profile: str, n: int) -> str:
    """The layer's cost on the core's durable-write pattern (X+, fsync, rename, fsync dir), n times, against
    the same loop on the target's own disk in the same run (the peer)."""
    from harness.powerloss.layer import PowerLossLayer

    prof = find_profile(profile)
    target = QemuUserTarget(prof, instance=f"{profile}-bench-powerloss-io")
    try:
        target.power_on()
        direct = float(target.run(["python3", "-c", IO_LOOP, "/var/tmp/direct", str(n)], timeout=600).stdout)
        layer = PowerLossLayer(target, "/greengrass", commit_s=1.0)
        layer.mount()
        through = float(target.run(["python3", "-c", IO_LOOP, "/greengrass/io", str(n)], timeout=600).stdout)
        target.power_cut()
        layer.reap()
    finally:
        target.close()
    return (
        f"{profile}: {n} x (write 1 KiB, fsync, rename, fsync dir): direct {direct / n * 1000:.2f} ms each, "
        f"through the power-loss layer {through / n * 1000:.2f} ms each (x{through / direct:.1f})"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="power-loss update-and-cut campaign")
    ap.add_argument("--profile", action="append", default=[])
    ap.add_argument("--cuts", type=int, default=100)
    ap.add_argument("--workload", choices=list(WORKLOADS), default="component")
    ap.add_argument("--model", choices=MODELS, default="power-loss")
    ap.add_argument("--peer-cuts", type=int, default=10, help="cuts of the crash-model peer (0: none)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--fault", action="append", default=[], help="nucleus fault: " + ", ".join(FAULTS))
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--io", type=int, default=0, help="only measure the layer's cost: N durable writes")
    args = ap.parse_args(argv)
    try:
        if args.io:
            for profile in args.profile or ["native-x86_64"]:
                print(io_bench(profile, args.io), flush=True)
            return 0
        bad = sorted(set(args.fault) - set(FAULTS))
        if bad:
            raise InputError(f"--fault {', '.join(bad)}: allowed values {', '.join(FAULTS)}")
        broken = 0
        results = []
        for profile in args.profile or ["native-x86_64"]:
            result, wall = one(profile, args.workload, args.model, args.cuts, args.seed, tuple(args.fault))
            print(result.report().splitlines()[0], flush=True)
            per_cut = wall / max(1, len(result.cuts))
            line = (
                f"{profile}: {args.workload}, {result.model}, seed {result.seed}: {len(result.cuts)} cuts, "
                f"{len(result.broken)} broke an invariant, update {result.update_s:.2f} s, "
                f"{wall:.0f} s wall, {per_cut:.1f} s per cut"
            )
            checks = sum(len(c.fsck) for c in result.cuts)
            if checks:
                dirty = sum(c.fsck_not_clean for c in result.cuts)
                line += f"; {checks} fsck after cuts, {dirty} found the disk not clean"
            if args.peer_cuts and result.model == "power-loss":
                peer, peer_wall = one(
                    profile, args.workload, "crash", args.peer_cuts, result.seed, tuple(args.fault)
                )
                peer_per_cut = peer_wall / max(1, len(peer.cuts))
                line += (
                    f"; peer (crash model, same run): update {peer.update_s:.2f} s, {peer_per_cut:.1f} s "
                    f"per cut, {len(peer.broken)}/{len(peer.cuts)} broke; layer costs "
                    f"x{result.update_s / max(peer.update_s, 1e-9):.2f} per update, "
                    f"x{per_cut / peer_per_cut:.2f} per cut"
                )
            print(line, flush=True)
            results.append({"profile": profile, "wall_s": wall, **result.to_dict()})
            broken += len(result.broken)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
        return 1 if broken else 0
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    from harness.errors import interrupt_on_sigterm

    interrupt_on_sigterm()
    sys.exit(main())
