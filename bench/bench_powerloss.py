"""Power-loss campaign (issue #8): >= 100 random update-and-cut runs per profile, figures for the README.

    python bench/bench_powerloss.py --profile native-x86_64 --cuts 100 [--model power-loss] [--seed S]
        [--fault non_atomic_config_write] [--json out.json]

Prints every cut (time, seed, fault model, invariants broken), then per profile: cuts, broken cuts, the
update duration, wall time per cut, and the ratio of the power-loss model's time per cut against the crash
model measured in the same run (the peer: what the write-back cache layer costs). Exit 1 if an invariant
broke (expected with --fault), 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from harness.core.nucleus.device.faults import FAULTS
from harness.errors import HarnessError, InputError
from harness.paths import FIXTURES_DIR
from harness.powerloss.campaign import MODELS, Campaign, CampaignResult, run_campaign
from harness.profiles import find_profile
from harness.targets.qemu_user import QemuUserTarget


def one(
    profile: str, model: str, cuts: int, seed: int | None, faults: tuple[str, ...]
) -> tuple[CampaignResult, float]:
    target = QemuUserTarget(find_profile(profile), instance=f"{profile}-bench-powerloss")
    campaign = Campaign(
        target,
        FIXTURES_DIR / "components" / "recipes",
        FIXTURES_DIR / "components" / "artifacts",
        model=model,
        faults=faults,
        seed=seed,
    )
    began = time.monotonic()
    try:
        result = run_campaign(campaign, cuts)
    finally:
        campaign.close()
        target.close()
    return result, time.monotonic() - began


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", action="append", default=[])
    ap.add_argument("--cuts", type=int, default=100)
    ap.add_argument("--model", choices=MODELS, default="power-loss")
    ap.add_argument("--peer-cuts", type=int, default=10, help="cuts of the crash-model peer (0: none)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--fault", action="append", default=[], help="nucleus fault: " + ", ".join(FAULTS))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    try:
        bad = sorted(set(args.fault) - set(FAULTS))
        if bad:
            raise InputError(f"--fault {', '.join(bad)}: allowed values {', '.join(FAULTS)}")
        broken = 0
        for profile in args.profile or ["native-x86_64"]:
            result, wall = one(profile, args.model, args.cuts, args.seed, tuple(args.fault))
            print(result.report(), flush=True)
            per_cut = wall / max(1, len(result.cuts))
            line = (
                f"{profile}: {args.model}, seed {result.seed}: {len(result.cuts)} cuts, "
                f"{len(result.broken)} broke an invariant, update {result.update_s:.2f} s, "
                f"{wall:.0f} s wall, {per_cut:.1f} s per cut"
            )
            if args.peer_cuts and args.model == "power-loss":
                peer, peer_wall = one(profile, "crash", args.peer_cuts, result.seed, tuple(args.fault))
                peer_per_cut = peer_wall / max(1, len(peer.cuts))
                line += (
                    f"; crash-model peer {peer_per_cut:.1f} s per cut, update {peer.update_s:.2f} s "
                    f"(layer costs x{per_cut / peer_per_cut:.2f} per cut, "
                    f"x{result.update_s / max(peer.update_s, 1e-9):.2f} per update)"
                )
            print(line, flush=True)
            if args.json:
                args.json.write_text(result.to_json())
            broken += len(result.broken)
        return 1 if broken else 0
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, InputError) else 3


if __name__ == "__main__":
    sys.exit(main())
