"""Benchmark (issue #9 validation): calibrate the fleet model on a small real storm, predict a larger one,
run the larger one for real, and print the error of the predicted time to 95 % reconnected.

One stand (native-x86_64 reference core, ``--devices`` provisioned devices, no discovery so the storm is the
core's accept path alone): a calibration storm with the first ``--calibrate`` devices and a saturating
backoff (the core's saturated accept rate and the ramp's handshake times, ``harness.fleet.calibrate``), then
``--repeat`` storms of all devices under ``--backoff``; each is predicted by the model (3 seeds, the run's
own outage length as input) and compared. A restart per storm; every run bounded by the fleet's time bound.

    python bench/bench_storm.py                                   # 1,000 -> 5,000 devices
    python bench/bench_storm.py --devices 2000 --calibrate 500 --pairs 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.fleet.backoff import BackoffPolicy
from harness.fleet.calibrate import storm_calibration, validate_storm
from harness.fleet.engine import FleetEngine
from harness.fleet.ledger import Ledger, LedgerSummary
from harness.fleet.plan import FleetConfig, make_plan
from harness.fleet.stand import LoadStand
from harness.profiles import find_profile
from harness.sim.calibration import Calibration, save_calibration


def storm_run(
    stand: LoadStand, devices: int, backoff: str, connect_rate: float
) -> tuple[Ledger, FleetConfig]:
    """One restart storm of ``devices`` devices (rate 0.05 msg/s: the storm, not telemetry, is measured)."""
    cfg = FleetConfig(
        devices=devices,
        connect_rate=connect_rate,
        rate=0.05,
        qos=0,
        duration_s=6.0,
        subscribers=0,
        discover=False,
        backoff=BackoffPolicy.parse(backoff),
        storm="restart",
        storm_at_s=2.0,
        reconnect_timeout_s=180.0,
        # Longer than any storm here: a core that interleaves every handshake finishes them all near the
        # end, and a shorter timeout would make the whole fleet give up and retry (a collapse, not a storm).
        connect_timeout_s=120.0,
        drain_s=1.0,
    )
    plan = make_plan(cfg, stand.identities[:devices], broker=stand.broker)
    ledger = Ledger(d.thing for d in plan.devices)
    FleetEngine(plan, [ledger], storm=stand.storm("restart")).run_sync()
    return ledger, cfg


def storm_line(label: str, s: LedgerSummary) -> str:
    st = s.storm
    assert st is not None
    return (
        f"{label}: {st.reconnected}/{st.devices} back, outage {st.op_s:.2f} s, t50 {st.t50_s} s, "
        f"t95 {st.t95_s} s, saturated {st.saturated_rate() or 0:.0f}/s, peak {st.peak_connect_rate_s:.0f}/s"
    )


def calibrate(stand: LoadStand, args: argparse.Namespace, out: Path) -> Calibration:
    ledger, cfg = storm_run(stand, args.calibrate, args.backoff, args.calibration_connect_rate)
    s = ledger.summary()
    print(storm_line(f"  calibration {args.calibrate}", s), flush=True)
    cal, why = storm_calibration(ledger, s, cfg, profile=args.profile, source="bench/bench_storm.py")
    if cal is None:
        raise SystemExit(f"calibration failed: {why}")
    save_calibration(cal, out)
    hs = cal.service_time()
    print(
        f"  calibration: accept rate {cal.accept_rate_per_s:g}/s, handshake median "
        f"{hs.median_s * 1000:.1f} ms, model slots {cal.model_concurrency()}",
        flush=True,
    )
    return cal


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="native-x86_64")
    ap.add_argument("--devices", type=int, default=5000, help="fleet size of the predicted storms")
    ap.add_argument("--calibrate", type=int, default=1000, help="fleet size of the calibration storms")
    ap.add_argument("--backoff", default="full-jitter:0.5:10", help="the devices' reconnect policy")
    ap.add_argument("--pairs", type=int, default=3, help="calibration + predicted storm, this many times")
    ap.add_argument(
        "--connect-rate",
        type=float,
        default=100.0,
        help="ramp rate before the predicted storms (below the accept rate, or the ramp itself storms)",
    )
    ap.add_argument(
        "--calibration-connect-rate",
        type=float,
        default=50.0,
        help="ramp rate of the calibration runs (slow: their connects are the unloaded handshake time)",
    )
    ap.add_argument("--out", type=Path, default=Path("reports/bench-storm"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    with LoadStand(find_profile(args.profile), args.devices, progress=print) as stand:
        for k in range(args.pairs):
            # Calibrate right before each predicted storm: the machine is shared, its load drifts.
            print(f"pair {k + 1}:", flush=True)
            cal = calibrate(stand, args, args.out / f"calibration-{k + 1}.json")
            ledger, cfg = storm_run(stand, args.devices, args.backoff, args.connect_rate)
            s = ledger.summary()
            v = validate_storm(cal, s, cfg)
            print(storm_line(f"  storm {args.devices}", s), flush=True)
            err = "n/a" if v.error is None else f"{100 * v.error:+.1f} %"
            print(f"  predicted t95 {v.predicted_t95_s} s vs measured {v.measured_t95_s} s: error {err}")
            results.append(v.to_json() | {"accept_rate_per_s": cal.accept_rate_per_s})
    errors = [r["error_pct"] for r in results if r["error_pct"] is not None]
    summary = {
        "calibration_devices": args.calibrate,
        "backoff": args.backoff,
        "storms": results,
        "mean_abs_error_pct": round(statistics.fmean(abs(e) for e in errors), 1) if errors else None,
    }
    (args.out / "storm-validation.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"errors of t95: {errors} %; mean |error| {summary['mean_abs_error_pct']} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
