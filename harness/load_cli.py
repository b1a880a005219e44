"""``harness load``: a fleet load run against the reference core on a profile's target (harness.fleet.load).

Registered in ``harness.cli`` with ``_add_optional(sub, "harness.load_cli", "add_subparsers")``; also runs
on its own as ``python -m harness.load_cli ...`` with the same options and exit statuses.
Exit status: 0 the load ran and no explicit threshold failed, 1 a threshold failed, 2 bad input, 3 the load
could not run (a partial report is written).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import InputError

if TYPE_CHECKING:
    from harness.fleet.load import LoadOptions


def add_subparsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from harness.fleet.backoff import POLICIES

    p = sub.add_parser(
        "load",
        help="fleet load run: N simulated devices discover and connect to the core, publish, subscribe",
        description=__doc__,
    )
    p.add_argument("--profile", required=True, help="profile name or path to a profile YAML file")
    p.add_argument("--devices", type=int, required=True, help="number of simulated client devices")
    p.add_argument(
        "--rate", type=float, default=1.0, help="telemetry messages per second per device (0: connect only)"
    )
    p.add_argument("--qos", type=int, default=0, choices=(0, 1), help="QoS of telemetry and subscriptions")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of steady telemetry once connected")
    p.add_argument(
        "--report-dir", type=Path, default=None, help="report directory (default: reports/<run-id>)"
    )
    p.add_argument(
        "--connect-rate", type=float, default=50.0, help="L1 ramp: devices starting per second (default 50)"
    )
    p.add_argument(
        "--subscribers",
        type=int,
        default=None,
        help="devices that also subscribe to relay/# (default: 1 per 100 devices, at least 1)",
    )
    p.add_argument("--payload-bytes", type=int, default=64, help="telemetry payload size")
    p.add_argument(
        "--backoff",
        default="full-jitter",
        help=f"reconnect policy NAME or NAME:BASE:CAP seconds; NAME: {', '.join(POLICIES)}",
    )
    p.add_argument(
        "--storm",
        choices=("restart", "rotate"),
        default=None,
        help="L3: restart the core or rotate its certificate during telemetry",
    )
    p.add_argument("--storm-at", type=float, default=None, help="seconds into telemetry (default: a third)")
    p.add_argument(
        "--reconnect-timeout", type=float, default=60.0, help="L3: longest wait for the fleet to return"
    )
    p.add_argument(
        "--sdk-devices",
        type=int,
        default=None,
        help="devices on the real AWS IoT Device SDK (default: 2, or 0 with --engine locust)",
    )
    p.add_argument("--no-discovery", action="store_true", help="connect straight to the core's endpoint")
    p.add_argument(
        "--engine",
        choices=("asyncio", "locust"),
        default="asyncio",
        help="asyncio: in this process; locust: headless master + workers (subprocesses)",
    )
    p.add_argument(
        "--locust-workers", type=int, default=2, help="locust worker processes (0: one local process)"
    )
    p.add_argument(
        "--core-fault", action="append", default=[], help="start the reference core with a seeded defect"
    )
    p.add_argument("--seed", type=int, default=1, help="seed of roles, phases and backoff jitter")
    p.add_argument(
        "--impair",
        default=None,
        metavar="SPEC",
        help="put the core behind a harness network namespace and impair the fleet link for the run: "
        "delay=100ms,jitter=10ms,loss=2%%,duplicate=1%%,reorder=5%%,rate=1mbit (each direction; qemu-user "
        "profiles); the report records what was applied and when, and the core's TCP retransmissions",
    )
    p.add_argument(
        "--revoked",
        type=int,
        default=0,
        metavar="N",
        help="seeded defect: revoke N devices' certificates first; they must show up as never connected",
    )
    p.add_argument(
        "--calibration",
        type=Path,
        default=None,
        metavar="FILE",
        help="with --storm: predict this storm with the fleet model calibrated by FILE (a calibration.json "
        "an earlier storm run wrote) and report the error of the time to 95 %% reconnected",
    )
    g = p.add_argument_group("thresholds (each given one becomes a test row; a failure exits 1)")
    g.add_argument(
        "--max-loss", type=float, default=None, metavar="PCT", help="max %% of expected deliveries lost"
    )
    g.add_argument("--max-duplicates", type=int, default=None, metavar="N")
    g.add_argument("--min-connected", type=float, default=None, metavar="PCT")
    g.add_argument("--max-latency-p99", type=float, default=None, metavar="MS")
    g.add_argument("--max-connect-p99", type=float, default=None, metavar="MS")
    g.add_argument("--max-reconnect-p99", type=float, default=None, metavar="S")
    g.add_argument(
        "--max-memory-drift",
        type=float,
        default=None,
        metavar="MB_PER_H",
        help="L4 soak: the core's memory may grow at most this fast over the run's second half",
    )
    p.set_defaults(func=cmd_load)


def options_from_args(args: argparse.Namespace) -> LoadOptions:
    """The validated ``LoadOptions`` of a parsed command line (``InputError`` names the option)."""
    from harness.core.reference import check_faults
    from harness.fleet.backoff import BackoffPolicy
    from harness.fleet.checks import Thresholds
    from harness.fleet.load import LoadOptions
    from harness.fleet.plan import FleetConfig
    from harness.paths import REPORTS_DIR
    from harness.profiles import find_profile
    from harness.report import new_run_id

    if args.devices < 1:
        raise InputError(f"--devices must be at least 1, got {args.devices}")
    subscribers = args.subscribers if args.subscribers is not None else max(1, args.devices // 100)
    sdk = (
        args.sdk_devices
        if args.sdk_devices is not None
        else (0 if args.engine == "locust" or args.no_discovery else min(2, args.devices))
    )
    storm_at = args.storm_at if args.storm_at is not None else args.duration / 3
    config = FleetConfig(
        devices=args.devices,
        connect_rate=args.connect_rate,
        rate=args.rate,
        qos=args.qos,
        duration_s=args.duration,
        payload_bytes=args.payload_bytes,
        subscribers=min(subscribers, args.devices),
        backoff=BackoffPolicy.parse(args.backoff),
        seed=args.seed,
        discover=not args.no_discovery,
        sdk_devices=sdk,
        storm=args.storm,
        storm_at_s=storm_at,
        reconnect_timeout_s=args.reconnect_timeout,
    ).validate()
    if not 0 <= args.revoked <= args.devices:
        raise InputError(f"--revoked must be 0..{args.devices} (the devices), got {args.revoked}")
    calibration = None
    if args.calibration is not None:
        from harness.sim.calibration import load_calibration

        if args.storm is None:
            raise InputError("--calibration needs --storm restart|rotate (it predicts the storm)")
        calibration = load_calibration(args.calibration)
    impair = None
    if args.impair is not None:
        from harness.net.impair import Impairment

        impair = Impairment.parse(args.impair, source="--impair")
    if args.locust_workers < 0 or args.locust_workers > 64:
        raise InputError(f"--locust-workers must be 0..64, got {args.locust_workers}")
    return LoadOptions(
        profile=find_profile(args.profile),
        config=config,
        report_dir=args.report_dir or REPORTS_DIR / new_run_id(),
        engine=args.engine,
        locust_workers=args.locust_workers,
        faults=tuple(sorted(check_faults(args.core_fault))),
        calibration=calibration,
        revoked=args.revoked,
        max_memory_drift_mb_h=args.max_memory_drift,
        impair=impair,
        thresholds=Thresholds(
            max_loss_pct=args.max_loss,
            max_duplicates=args.max_duplicates,
            min_connected_pct=args.min_connected,
            max_latency_p99_ms=args.max_latency_p99,
            max_connect_p99_ms=args.max_connect_p99,
            max_reconnect_p99_s=args.max_reconnect_p99,
        ),
    )


def cmd_load(args: argparse.Namespace) -> int:
    from harness.fleet.load import run_load

    opts = options_from_args(args)

    def say(msg: str) -> None:
        print(msg, flush=True)

    outcome = run_load(opts, say)
    if outcome.error:
        print(f"harness: error: the load could not run: {outcome.error}", file=sys.stderr)
    if outcome.block is not None:
        b = outcome.block
        print(
            f"load: {b['connected']}/{b['devices']} connected, published {b['published']}, received "
            f"{b['received']}, lost {b['lost']}, duplicates {b['duplicates']}, "
            f"{b['throughput_msg_s']} msg/s, "
            f"latency p99 {b['latency_ms']['p99']} ms, connect p99 {b['connect_ms']['p99']} ms",
            flush=True,
        )
    for c in outcome.checks:
        print(f"load: {'ok  ' if c.ok else 'FAIL'} {c.id}: {c.message}", flush=True)
    print(f"load: report {outcome.report_dir}", flush=True)
    return outcome.exit_status


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness.load_cli``: the ``load`` command alone, with the CLI's error handling."""
    from harness.cli import main as cli_main

    return cli_main(["load", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
