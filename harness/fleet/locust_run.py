"""Run the fleet under locust, in its own processes: a headless master and N workers on loopback.

Locust monkey-patches the interpreter, so it never runs inside the harness (or pytest): this module starts
``python -m locust`` processes, waits for them with a time limit, kills every one of them on any way out,
and reads back what they wrote - locust's CSV and JSON stats and the workers' raw records (JSONL).
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from harness.core.base import free_port
from harness.errors import InfraError, InputError
from harness.fleet.plan import FleetPlan
from harness.fleet.sinks import read_jsonl
from harness.records import Measurement

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
UserClass = Literal["FleetShardUser", "PahoPeerUser"]
#: Time for locust to import and for the workers to report to the master before devices start.
STARTUP_S = 6.0


@dataclass
class LocustOutcome:
    """What a locust run left: exit codes, the stats files and the raw records of every worker."""

    out_dir: Path
    returncodes: dict[str, int]
    stats_csv: Path
    stats_json: Path
    records: list[Path] = field(default_factory=list)
    generator_cpu_s: float = 0.0
    generator_rss_mb: float = 0.0
    wall_s: float = 0.0

    def measurements(self) -> list[Measurement]:
        out: list[Measurement] = []
        for path in self.records:
            out.extend(m for m in read_jsonl(path) if m.request_type != "FLEET" or m.name.startswith("storm"))
        return out

    def csv_stats(self) -> dict[str, dict[str, float]]:
        """locust's own ``--csv`` summary (``locust_stats.csv``) per request name: requests, failures,
        median, p95 and average response time in ms. The harness reads it back so a user can hold locust's
        view of the run next to the ledger's; an unreadable or missing file gives ``{}``."""
        out: dict[str, dict[str, float]] = {}
        try:
            with self.stats_csv.open(newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    name = row.get("Name", "")
                    if not name or name == "Aggregated":
                        continue
                    out[name] = {
                        "requests": _num(row["Request Count"]),
                        "failures": _num(row["Failure Count"]),
                        "median_ms": _num(row["Median Response Time"]),
                        "p95_ms": _num(row.get("95%")),
                        "average_ms": _num(row["Average Response Time"]),
                    }
        except (OSError, KeyError):
            return {}
        return out

    def stats(self) -> list[dict[str, Any]]:
        """locust's ``--json-file`` stats (one entry per request type and name)."""
        try:
            data = json.loads(self.stats_json.read_text())
        except (OSError, ValueError):
            return []
        return data if isinstance(data, list) else []


def locust_timeline(plan: FleetPlan, *, startup_s: float = STARTUP_S) -> FleetPlan:
    """Fix the fleet's clock for processes that cannot wait for each other: ramp start and telemetry start."""
    cfg = plan.config
    start = time.time() + startup_s
    settle = max(2.0, 0.25 * cfg.ramp_s) + (2.0 if cfg.discover else 0.0)
    return replace(plan, start_unix=start, publish_start_unix=start + cfg.ramp_s + settle)


def run_locust(
    plan: FleetPlan,
    out_dir: Path,
    *,
    workers: int = 2,
    users: int | None = None,
    user_class: UserClass = "FleetShardUser",
    progress: Callable[[str], None] | None = None,
) -> LocustOutcome:
    """Run ``plan`` under locust; ``workers=0`` runs one local (non-distributed) locust process.

    ``FleetShardUser``: ``users`` shards (default: one per worker). ``PahoPeerUser``: one user per device.
    The run is bounded: locust's ``--run-time`` ends it and the processes are killed past a hard limit.
    """
    if plan.config.storm:
        raise InputError("--storm needs the harness to restart the core mid-run; not available under locust")
    say = progress or (lambda _m: None)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.jsonl"):
        old.unlink()
    nproc = max(1, workers)
    if user_class == "PahoPeerUser":
        users = len(plan.devices)
    users = users or nproc
    if users % nproc:
        users = math.ceil(users / nproc) * nproc  # locust spreads users evenly; extra shards idle
    plan = locust_timeline(plan)
    assert plan.publish_start_unix is not None
    plan_path = plan.write(out_dir / "plan.json")
    end = plan.publish_start_unix + plan.config.duration_s + plan.config.drain_s + 2.0
    run_time = max(5, math.ceil(end - time.time()))
    spawn_rate = plan.config.connect_rate if user_class == "PahoPeerUser" else users
    env = {
        **os.environ,
        "HARNESS_FLEET_PLAN": str(plan_path),
        "HARNESS_FLEET_OUT": str(out_dir),
        "HARNESS_FLEET_SHARDS": str(
            min(users, len(plan.devices)) if user_class == "FleetShardUser" else users
        ),
        "HARNESS_FLEET_PER_WORKER": str(users // nproc),
        "PYTHONUNBUFFERED": "1",
    }
    base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--loglevel", "WARNING"]
    common = [
        "--headless",
        "-u",
        str(users),
        "-r",
        str(spawn_rate),
        "-t",
        f"{run_time}s",
        "--stop-timeout",
        "30",
        "--csv",
        str(out_dir / "locust"),
        "--json-file",
        str(out_dir / "locust"),
        "--only-summary",
        "--exit-code-on-error",
        "0",
    ]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    started = time.monotonic()
    try:
        if workers <= 0:
            procs["locust"] = _spawn(
                [*base, *common, "--logfile", str(out_dir / "locust.log"), user_class],
                env,
                out_dir / "locust.out",
            )
        else:
            port = free_port("127.0.0.1")
            procs["master"] = _spawn(
                [
                    *base,
                    *common,
                    "--master",
                    "--master-bind-host",
                    "127.0.0.1",
                    "--master-bind-port",
                    str(port),
                    "--expect-workers",
                    str(workers),
                    "--expect-workers-max-wait",
                    "60",
                    "--logfile",
                    str(out_dir / "master.log"),
                    user_class,
                ],
                env,
                out_dir / "master.out",
            )
            for i in range(workers):
                procs[f"worker-{i}"] = _spawn(
                    [
                        *base,
                        "--worker",
                        "--master-host",
                        "127.0.0.1",
                        "--master-port",
                        str(port),
                        "--logfile",
                        str(out_dir / f"worker-{i}.log"),
                        user_class,
                    ],
                    env,
                    out_dir / f"worker-{i}.out",
                )
        say(
            f"locust: {user_class} x {users} on {workers or 'no'} worker(s), {len(plan.devices)} devices, "
            f"{run_time} s"
        )
        limit = time.time() + run_time + STARTUP_S + 90
        codes = _wait_all(procs, limit)
    finally:
        _kill_all(procs)
    outcome = LocustOutcome(
        out_dir=out_dir,
        returncodes=codes,
        stats_csv=out_dir / "locust_stats.csv",
        stats_json=out_dir / "locust.json",
        records=sorted(out_dir.glob("*.jsonl")),
        wall_s=round(time.monotonic() - started, 2),
    )
    for path in outcome.records:
        for m in read_jsonl(path):
            if m.request_type == "FLEET" and m.name == "generator":
                outcome.generator_cpu_s += float(m.context.get("cpu_s", 0.0))
                outcome.generator_rss_mb += float(m.context.get("rss_mb", 0.0))
    bad = {k: v for k, v in codes.items() if v != 0}
    if bad:
        tails = "\n".join(
            f"--- {k} (exit {v}):\n{_tail(out_dir / f'{k}.out')}{_tail(out_dir / f'{k}.log')}"
            for k, v in bad.items()
        )
        raise InfraError(f"locust did not finish cleanly (logs in {out_dir}):\n{tails}")
    return outcome


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:
        return subprocess.Popen(
            argv,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=str(log.parent),
        )


def _wait_all(procs: dict[str, subprocess.Popen[bytes]], deadline: float) -> dict[str, int]:
    codes: dict[str, int] = {}
    while len(codes) < len(procs):
        for name, p in procs.items():
            if name not in codes and p.poll() is not None:
                codes[name] = p.returncode
        if time.time() > deadline:
            missing = [n for n in procs if n not in codes]
            raise InfraError(
                f"locust processes still running past the run's time limit: {', '.join(missing)}"
            )
        time.sleep(0.2)
    return codes


def _kill_all(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGINT first (locust writes its stats), then SIGKILL; every process is reaped."""
    running = [p for p in procs.values() if p.poll() is None]
    for p in running:
        try:
            os.killpg(p.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 15
    for p in running:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=10)


def _num(text: str | None) -> float:
    """A locust CSV number; "N/A" (no requests) and blanks read as 0."""
    try:
        return float(text or 0)
    except ValueError:
        return 0.0


def _tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""
