"""The ``simulate`` command: run the fleet model (a reconnect storm) and write a report.

``add_subparsers`` plugs it into the top-level parser; ``main`` runs it standalone
(``python -m harness.simulate_cli --devices 10000 --policy full``). The model lives in ``harness.sim``;
this module only turns flags into ``SimConfig``s and results into a report and a short summary.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.errors import InputError

EPILOG = """\
Times are seconds since the disruption; every device is connected before it. Flags given explicitly win
over values from --calibration. A sweep runs its policies in parallel processes (--workers).

Validating the model against a real storm (needs the fleet engine):
  1. measure the core: handshake service time (few clients) and accept rate (saturated) -> calibration JSON
     (format: harness/sim/calibration.py);
  2. harness simulate --calibration cal.json --devices 5000 --event rotation --policy P ... (the fleet's
     real connect timeout, keep-alive and backoff);
  3. restart the core under the fleet engine with the same settings and record each device's reconnect time;
  4. harness.sim.compare(predicted, MeasuredStorm.from_times(...)): relative error of the time to 95 %.
"""


def add_subparsers(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the ``simulate`` command."""
    from harness.sim.config import EVENTS, POLICIES
    from harness.sim.run import ENGINES

    p = sub.add_parser(
        "simulate",
        help="fleet model: simulate a reconnect storm of N devices against a core and write a report",
        description="Discrete-event model of a reconnect storm: N devices against a core with limited "
        "accept capacity, after an outage or a certificate rotation, under a backoff policy.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--devices", type=_count, required=True, metavar="N", help="fleet size")
    p.add_argument("--policy", choices=POLICIES, default=None, help="reconnect backoff policy")
    p.add_argument(
        "--sweep",
        type=_policies,
        default=None,
        metavar="P,P,...",
        help=f"several policies, compared in one report ('all' = {','.join(POLICIES)})",
    )
    p.add_argument("--base-ms", type=_ms, default=None, help="backoff base (default 1000)")
    p.add_argument("--cap-ms", type=_ms, default=None, help="backoff cap (default 60000)")
    p.add_argument(
        "--handshake-ms",
        type=_handshake,
        default=None,
        metavar="MEDIAN[,P95]",
        help="TLS handshake service time; one value = constant (default 20,30)",
    )
    p.add_argument("--concurrency", type=_count, default=None, help="handshakes at once (default 8)")
    p.add_argument("--rate-limit", type=_positive, default=None, metavar="PER_S", help="connect rate limit")
    p.add_argument("--burst", type=_positive, default=None, help="rate-limit burst (default: concurrency)")
    p.add_argument("--backlog", type=_count0, default=None, help="accept queue bound (default unbounded)")
    p.add_argument(
        "--syn-retries",
        type=_count0,
        default=None,
        help="SYN resends after a full backlog drops one (default 6, Linux tcp_syn_retries)",
    )
    p.add_argument(
        "--accept-interval-ms",
        type=_ms,
        default=None,
        help="eager core: ms between accept sweeps; --backlog then bounds the SYNs per sweep",
    )
    p.add_argument("--connect-timeout-ms", type=_ms, default=None, help="connect timeout (default 5000)")
    p.add_argument("--network-ms", type=_ms, default=None, help="device-to-core latency (default 2)")
    p.add_argument("--event", choices=EVENTS, default=None, help="disruption (default outage)")
    p.add_argument(
        "--outage-s",
        type=_non_negative,
        default=None,
        help="core down time (default: the calibration's outage_s, else 30)",
    )
    p.add_argument("--keepalive-s", type=_positive, default=None, help="MQTT keep-alive (default 60)")
    p.add_argument("--horizon-s", type=_positive, default=None, help="simulated time limit (default 3600)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default 1)")
    p.add_argument("--calibration", type=Path, default=None, metavar="FILE", help="measured core capacity")
    p.add_argument("--engine", choices=ENGINES, default="cohort", help="cohort (fast) or naive (reference)")
    p.add_argument("--workers", type=_count, default=None, help="parallel processes for a sweep")
    p.add_argument("--report-dir", type=Path, default=None, help="default: reports/<run-id>")
    p.set_defaults(func=cmd_simulate)


def cmd_simulate(args: argparse.Namespace) -> int:
    from harness.paths import REPORTS_DIR
    from harness.report import exit_status
    from harness.sim.calibration import load_calibration
    from harness.sim.config import SimConfig
    from harness.sim.report import write_report
    from harness.sim.run import sweep
    from harness.sim.validate import calibrated_config

    policies = list(dict.fromkeys(([args.policy] if args.policy else []) + (args.sweep or [])))
    if not policies:
        raise InputError("harness simulate: give --policy P or --sweep P,P,... (e.g. --policy full)")
    overrides = _overrides(args)
    calibration = load_calibration(args.calibration) if args.calibration else None
    configs = []
    try:
        for policy in policies:
            if calibration is not None:
                configs.append(calibrated_config(calibration, args.devices, policy, **overrides))
            else:
                configs.append(SimConfig(devices=args.devices, policy=policy, **overrides))
    except InputError as exc:
        raise _flag_error(exc) from exc
    print(
        f"simulate: {args.devices} devices, {configs[0].event}, {len(configs)} "
        f"polic{'y' if len(configs) == 1 else 'ies'} ({', '.join(policies)}), engine {args.engine}",
        flush=True,
    )
    results = sweep(configs, args.engine, max_workers=args.workers)
    props: dict[str, Any] = {"engine": args.engine, "devices": args.devices, "seed": configs[0].seed}
    if args.calibration:
        props["calibration"] = str(args.calibration)
    from harness.report import new_run_id

    report_dir = args.report_dir or REPORTS_DIR / new_run_id()
    run = write_report(
        report_dir,
        results,
        profile_properties=props,
        calibration=calibration.model_dump(mode="json") if calibration else None,
    )
    for m in results:
        t50, t95, t99 = (_secs(v) for v in (m.t50_s, m.t95_s, m.t99_s))
        print(
            f"  {m.policy:13} 50%={t50:>8} 95%={t95:>8} 99%={t99:>8} "
            f"attempts/device={m.attempts_mean:6.2f} peak={m.peak_connect_rate_per_s:7.0f}/s "
            f"queue<={m.peak_queue} ({m.wall_s:.2f} s)"
        )
    print(f"simulate: report {report_dir / 'index.html'}", flush=True)
    return exit_status(run)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """SimConfig fields for the flags given explicitly (absent flags keep calibration or defaults)."""
    from harness.sim.config import ServiceTime

    out: dict[str, Any] = {}
    pairs: list[tuple[str, Any]] = [
        ("base_s", None if args.base_ms is None else args.base_ms / 1000),
        ("cap_s", None if args.cap_ms is None else args.cap_ms / 1000),
        ("concurrency", args.concurrency),
        ("rate_limit_per_s", args.rate_limit),
        ("rate_burst", args.burst),
        ("backlog", args.backlog),
        ("syn_retries", args.syn_retries),
        ("accept_interval_s", None if args.accept_interval_ms is None else args.accept_interval_ms / 1000),
        ("connect_timeout_s", None if args.connect_timeout_ms is None else args.connect_timeout_ms / 1000),
        ("network_delay_s", None if args.network_ms is None else args.network_ms / 1000),
        ("event", args.event),
        ("outage_s", args.outage_s),
        ("keepalive_s", args.keepalive_s),
        ("horizon_s", args.horizon_s),
        ("seed", args.seed),
    ]
    out.update({k: v for k, v in pairs if v is not None})
    if args.handshake_ms is not None:
        median, p95 = args.handshake_ms
        out["handshake"] = ServiceTime(median_s=median / 1000, p95_s=p95 / 1000)
    return out


#: The flag that sets each SimConfig field, so a config error names what the user typed.
FLAGS = {
    "devices": "--devices",
    "base_s": "--base-ms",
    "cap_s": "--cap-ms",
    "concurrency": "--concurrency",
    "rate_limit_per_s": "--rate-limit",
    "rate_burst": "--burst",
    "backlog": "--backlog",
    "syn_retries": "--syn-retries",
    "accept_interval_s": "--accept-interval-ms",
    "connect_timeout_s": "--connect-timeout-ms",
    "network_delay_s": "--network-ms",
    "outage_s": "--outage-s",
    "keepalive_s": "--keepalive-s",
    "horizon_s": "--horizon-s",
}


def _flag_error(exc: InputError) -> InputError:
    field = str(exc).split(":", 1)[0]
    flag = FLAGS.get(field)
    return InputError(f"{flag} ({exc})") if flag else exc


def _secs(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f}s"


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _positive(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _non_negative(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


_ms = _non_negative


def _count0(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def _count(text: str) -> int:
    value = _count0(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


def _handshake(text: str) -> tuple[float, float]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) > 2 or not all(parts):
        raise argparse.ArgumentTypeError(f"expected MEDIAN or MEDIAN,P95 in ms, got {text!r}")
    median = _positive(parts[0])
    p95 = _positive(parts[1]) if len(parts) == 2 else median
    if p95 < median:
        raise argparse.ArgumentTypeError(f"p95 ({p95:g} ms) is below the median ({median:g} ms)")
    return median, p95


def _policies(text: str) -> list[str]:
    from harness.sim.config import POLICIES

    if text.strip() == "all":
        return list(POLICIES)
    names = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [n for n in names if n not in POLICIES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown polic{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown) or '(none given)'}; "
            f"allowed: {', '.join(POLICIES)} or all"
        )
    return list(dict.fromkeys(names))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness.simulate_cli``: the ``simulate`` command alone, with the CLI's error handling."""
    from harness.cli import main as cli_main

    return cli_main(["simulate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
