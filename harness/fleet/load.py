"""``harness load``: one fleet load run against the reference core on a profile's target, and its report.

profile -> target on -> fresh cloud (core + N devices + device-group policy) -> discovery endpoint and core
up -> fleet (asyncio engine in this process, or locust master/workers as subprocesses) -> report directory:
results.json (with the ``load`` block), junit.xml, index.html, ``devices.csv`` (per-device counts) and
``measurements.jsonl`` (every record, the one ``Measurement`` shape). A run that could not complete still
writes a partial report and exits 3.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from harness.errors import EXIT_INFRA, HarnessError, InputError
from harness.fleet.checks import CheckOutcome, Thresholds, describe
from harness.fleet.engine import EngineReport, FleetEngine
from harness.fleet.ledger import CSV_FIELDS, Ledger, LedgerSummary
from harness.fleet.memory import MemorySampler
from harness.fleet.plan import FleetConfig, FleetPlan, make_plan
from harness.fleet.sinks import JsonlSink
from harness.fleet.stand import LoadStand
from harness.profiles import DeviceProfile
from harness.records import TestRecord
from harness.sim.calibration import Calibration, save_calibration

if TYPE_CHECKING:
    from harness.net.impair import Impairment

MEASUREMENTS = "measurements.jsonl"
DEVICES_CSV = "devices.csv"
#: Written after every storm run: what it measured about the core, for ``harness simulate --calibration``.
CALIBRATION = "calibration.json"
EngineChoice = Literal["asyncio", "locust"]


@dataclass
class LoadOptions:
    profile: DeviceProfile
    config: FleetConfig
    report_dir: Path
    engine: EngineChoice = "asyncio"
    locust_workers: int = 2
    faults: tuple[str, ...] = ()
    thresholds: Thresholds = field(default_factory=Thresholds)
    #: Predict this run's storm with the fleet model calibrated by this file and report the error.
    calibration: Calibration | None = None
    #: Devices whose certificates are revoked before the run (seeded defect: they must fail).
    revoked: int = 0
    #: L4 soak: largest growth of the core's memory allowed, MB per hour (None: no check).
    max_memory_drift_mb_h: float | None = None
    #: Impair the fleet <-> core link for the whole run (issue #12); None: the core on loopback.
    impair: Impairment | None = None


@dataclass
class LoadOutcome:
    """What ``run_load`` produced; ``exit_status`` is the command's."""

    exit_status: int
    summary: LedgerSummary | None
    checks: list[CheckOutcome]
    report_dir: Path
    block: dict[str, Any] | None = None
    error: str = ""


def run_load(opts: LoadOptions, progress: Callable[[str], None] | None = None) -> LoadOutcome:
    """Run the load and write the report; never raises for an infrastructure failure (exit 3 instead)."""
    from harness.report import Run, exit_status

    say = progress or (lambda _m: None)
    cfg = opts.config.validate()
    if opts.engine == "locust" and cfg.storm:
        raise InputError("--storm is only available with --engine asyncio (the harness restarts the core)")
    if opts.engine == "locust" and cfg.sdk_devices:
        raise InputError("--sdk-devices is only available with --engine asyncio")
    opts.report_dir.mkdir(parents=True, exist_ok=True)
    run = Run.start({opts.profile.name: {"arch": opts.profile.arch, "transport": opts.profile.transport}})
    run.write(opts.report_dir)
    summary: LedgerSummary | None = None
    block: dict[str, Any] | None = None
    checks: list[CheckOutcome] = []
    started = time.monotonic()
    try:
        with LoadStand(
            opts.profile, cfg.devices, faults=opts.faults, progress=say, impair=opts.impair
        ) as stand:
            control = stand.network.control if stand.network is not None else None
            tcp_before = control.tcp_counters() if control is not None else {}
            plan = make_plan(cfg, stand.identities, discovery=stand.discovery, broker=stand.broker)
            if opts.revoked:
                revoked = stand.revoke(opts.revoked)
                say(f"load: revoked the certificates of {len(revoked)} devices (first: {revoked[0]})")
                if not cfg.discover:
                    say("load: without discovery only the core itself can refuse the revoked devices")
            ledger = Ledger(d.thing for d in plan.devices)
            memory = MemorySampler(stand.core_rss_mb, memory_interval_s(cfg))
            with memory:
                generator, timing = _run_fleet(opts, stand, plan, ledger, say)
            network = _network_block(stand, tcp_before, opts.report_dir)
        summary = ledger.summary()
        model = _model_block(opts, ledger, summary, say)
        block = {
            **summary.load_block(),
            "generator": generator,
            "qos": cfg.qos,
            "rate": cfg.rate,
            "duration_s": cfg.duration_s,
            "connect_rate": cfg.connect_rate,
            "backoff": str(cfg.backoff),
            "engine": opts.engine,
            "faults": sorted(opts.faults),
            **({"revoked": opts.revoked} if opts.revoked else {}),
            **timing,
            **model,
            "memory": memory.block(),
            **({"network": network} if network else {}),
        }
        write_devices_csv(opts.report_dir / DEVICES_CSV, summary)
        checks = opts.thresholds.evaluate(summary, cfg.qos)
        if opts.max_memory_drift_mb_h is not None:
            checks.append(memory_check(block["memory"], opts.max_memory_drift_mb_h))
        run.load = block
        run.add(
            TestRecord(
                id="load.run",
                suite="load",
                profile=opts.profile.name,
                outcome="passed",
                duration_s=round(time.monotonic() - started, 2),
                requirement="the load ran to completion, bounded in count and time",
                source="issue #6; scenarios.md load",
                evidence=describe(summary),
                message=f"{summary.connected}/{summary.devices} connected, "
                f"{summary.received} received, {summary.lost} lost",
            )
        )
        for c in checks:
            run.add(
                TestRecord(
                    id=c.id,
                    suite="load",
                    profile=opts.profile.name,
                    outcome="passed" if c.ok else "failed",
                    requirement=c.requirement,
                    source="harness load thresholds",
                    evidence=c.message,
                    message=c.message,
                )
            )
        run.finish()
        run.write(opts.report_dir)
        return LoadOutcome(exit_status(run), summary, checks, opts.report_dir, block)
    except HarnessError as exc:
        if isinstance(exc, InputError):
            raise
        run.add(
            TestRecord(
                id="load.run",
                suite="load",
                profile=opts.profile.name,
                outcome="error",
                duration_s=round(time.monotonic() - started, 2),
                requirement="the load ran to completion",
                source="issue #6",
                evidence=str(exc),
                message=str(exc).splitlines()[0][:300],
                properties={"infra": "1"},
            )
        )
        run.finish(partial=True, reason=str(exc).splitlines()[0][:300])
        run.write(opts.report_dir)
        return LoadOutcome(EXIT_INFRA, summary, checks, opts.report_dir, block, error=str(exc))


def _network_block(stand: LoadStand, tcp_before: dict[str, int], report_dir: Path) -> dict[str, Any]:
    """What was done to the network during the run and what it cost TCP (empty without ``--impair``); the
    impairment events also go to ``measurements.jsonl`` beside the fleet's records."""
    net = stand.network
    if net is None or net.control is None:
        return {}
    control = net.control
    after = control.tcp_counters()
    with (report_dir / MEASUREMENTS).open("a", encoding="utf-8") as out:
        for ev in control.events:
            out.write(json.dumps(ev.measurement().to_json()) + "\n")
    return {**control.report(), "tcp_core_ns": {k: v - tcp_before.get(k, 0) for k, v in after.items()}}


def _run_fleet(
    opts: LoadOptions, stand: LoadStand, plan: FleetPlan, ledger: Ledger, say: Callable[[str], None]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the fleet on the chosen engine; records go to the ledger and ``measurements.jsonl``. Returns
    what the generator cost and the run's timing."""
    cfg = plan.config
    if opts.engine == "asyncio":
        jsonl = JsonlSink(opts.report_dir / MEASUREMENTS)
        try:
            storm = stand.storm(cfg.storm) if cfg.storm else None
            report = FleetEngine(plan, [ledger, jsonl], storm=storm, progress=say).run_sync()
        finally:
            jsonl.close()
        generator = {"cpu_s": report.cpu_s, "rss_mb": report.rss_mb, "engine": "asyncio", "processes": 1}
        return generator, _timing(report)
    from harness.fleet.locust_run import run_locust

    out = run_locust(plan, opts.report_dir / "locust", workers=opts.locust_workers, progress=say)
    with (opts.report_dir / MEASUREMENTS).open("wb") as dst:
        for path in out.records:
            with path.open("rb") as src:
                shutil.copyfileobj(src, dst)
    for m in out.measurements():
        ledger.add(m)
    generator = {
        "cpu_s": round(out.generator_cpu_s, 3),
        "rss_mb": round(out.generator_rss_mb, 1),
        "engine": "locust",
        "processes": max(1, opts.locust_workers),
    }
    return generator, {"wall_s": out.wall_s, "locust_csv": out.csv_stats()}


def memory_interval_s(cfg: FleetConfig) -> float:
    """About 200 memory samples over the expected run, one per second at most and a minute at least."""
    expected = cfg.ramp_s + cfg.duration_s + (cfg.reconnect_timeout_s if cfg.storm else 0.0)
    return max(1.0, min(60.0, expected / 200.0))


def memory_check(memory: dict[str, Any], limit_mb_h: float) -> CheckOutcome:
    """L4 soak: the core's memory must not grow faster than ``limit_mb_h`` over the run's second half."""
    drift = memory.get("core_drift_mb_per_h")
    requirement = f"the core's memory grows by at most {limit_mb_h:g} MB/h (L4 soak)"
    if drift is None:
        return CheckOutcome(
            "load.max_memory_drift",
            False,
            f"too few memory samples of the core ({len(memory.get('t_s', []))}, one every "
            f"{memory.get('interval_s')} s) to measure a drift: a soak needs at least 20 minutes, "
            "run longer",
            requirement,
        )
    ok = drift <= limit_mb_h
    return CheckOutcome(
        "load.max_memory_drift",
        ok,
        f"core memory drift {drift:+g} MB/h over the run's second half (limit {limit_mb_h:g} MB/h); "
        f"generator {memory.get('generator_drift_mb_per_h')} MB/h",
        requirement,
    )


def _model_block(
    opts: LoadOptions, ledger: Ledger, summary: LedgerSummary, say: Callable[[str], None]
) -> dict[str, Any]:
    """After a storm: save what it measured as a calibration file, and score the model's prediction of it
    when a calibration was given (issue #9). Informative: never fails the run."""
    from harness.fleet.calibrate import storm_calibration, validate_storm

    if summary.storm is None:
        return {}
    out: dict[str, Any] = {}
    cal, why = storm_calibration(
        ledger, summary, opts.config, profile=opts.profile.name, source=f"harness load {opts.report_dir.name}"
    )
    if cal is not None:
        save_calibration(cal, opts.report_dir / CALIBRATION)
        out["calibration"] = {
            "file": CALIBRATION,
            "accept_rate_per_s": cal.accept_rate_per_s,
            "outage_s": cal.outage_s,
        }
        say(f"load: calibration {opts.report_dir / CALIBRATION} ({cal.accept_rate_per_s:g} accepts/s)")
    else:
        out["calibration"] = {"file": None, "why_not": why}
    if opts.calibration is not None:
        v = validate_storm(opts.calibration, summary, opts.config)
        out["model"] = v.to_json()
        say(
            f"load: model predicted t95 {v.predicted_t95_s} s, measured {v.measured_t95_s} s"
            + (f", error {100 * v.error:+.1f} %" if v.error is not None else f" ({v.note})")
        )
    return out


def _timing(report: EngineReport) -> dict[str, Any]:
    out: dict[str, Any] = {"wall_s": round(report.ended_unix - report.started_unix, 2)}
    if report.publish_start_unix and report.publish_end_unix:
        out["telemetry_s"] = round(report.publish_end_unix - report.publish_start_unix, 2)
    if report.overran:
        out["overran"] = True
    if report.storm_error:
        out["storm_error"] = report.storm_error
    return out


def write_devices_csv(path: Path, summary: LedgerSummary) -> Path:
    """Per-device counts, one row per device (the CSV a user sorts to find the worst devices)."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in summary.rows:
            writer.writerow(row.to_row())
    return path
