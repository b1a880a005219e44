"""The fleet against the real reference core on native-x86_64: counts, a reconnect storm, a seeded defect,
locust master + two workers, and the ``harness load`` command line (small and short: seconds each)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.fleet.backoff import BackoffPolicy
from harness.fleet.checks import Thresholds, loss_problem
from harness.fleet.engine import FleetEngine
from harness.fleet.ledger import Ledger, ledger_from
from harness.fleet.locust_run import run_locust
from harness.fleet.plan import FleetConfig, make_plan
from harness.fleet.stand import LoadStand
from harness.profiles import find_profile
from harness.records import Measurement

pytestmark = pytest.mark.qemu
PROFILE = "native-x86_64"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stand() -> Iterator[LoadStand]:
    with LoadStand(find_profile(PROFILE), 60) as s:
        yield s


def test_small_run_counts_every_message(stand: LoadStand) -> None:
    cfg = FleetConfig(
        devices=50, connect_rate=100, rate=2, qos=1, duration_s=5, subscribers=2, sdk_devices=2, drain_s=3
    )
    plan = make_plan(cfg, stand.identities, discovery=stand.discovery)
    ledger = Ledger(d.thing for d in plan.devices)
    records: list[Measurement] = []
    report = FleetEngine(plan, [ledger, records.append]).run_sync()
    s = ledger.summary()
    assert (s.devices, s.connected, s.failed) == (50, 50, 0), s.load_block()
    # every device publishes exactly rate x duration messages: one per slot of its own phase
    assert [r.published for r in s.rows] == [10] * 50
    assert s.published == 500 and s.publish_failed == 0
    assert (s.expected, s.received, s.lost, s.duplicates) == (1000, 1000, 0, 0)
    assert s.subscribers == 2 and not s.subscribe_downgraded
    assert {r.engine for r in s.rows} == {"asyncio", "sdk"}
    assert s.discover_failed == 0 and s.discover_ms["p50"] is not None
    connects = [m for m in records if m.name == "connect"]
    assert connects and all(m.response_time > 0 for m in connects), "connect must be timed, never 0 ms"
    assert all(m.context.get("t_ns") for m in connects)
    assert s.latency_ms["p50"] is not None and s.latency_ms["p50"] <= (s.latency_ms["p99"] or 0)
    assert report.publish_start_unix is not None and not report.overran


def test_l3_restart_storm_reports_reconnect_percentiles(stand: LoadStand) -> None:
    cfg = FleetConfig(
        devices=40,
        connect_rate=100,
        rate=2,
        qos=0,
        duration_s=4,
        subscribers=1,
        discover=False,
        storm="restart",
        storm_at_s=1.0,
        backoff=BackoffPolicy("full-jitter", 0.2, 2.0),
        reconnect_timeout_s=30,
        drain_s=2,
    )
    plan = make_plan(cfg, stand.identities, broker=stand.broker)
    ledger = Ledger(d.thing for d in plan.devices)
    FleetEngine(plan, [ledger], storm=stand.storm("restart")).run_sync()
    s = ledger.summary()
    st = s.storm
    assert st is not None and st.kind == "restart"
    assert (st.devices, st.reconnected) == (40, 40), s.load_block()
    assert st.t50_s is not None and st.t95_s is not None and st.t99_s is not None
    assert 0 < st.t50_s <= st.t95_s <= st.t99_s < 30
    assert st.peak_connect_rate_s > 0 and st.attempts >= 40
    assert s.disconnects >= 40 and all(r.connects >= 2 for r in s.rows)


def test_seeded_defect_qos1_dropped_fails_the_load_check() -> None:
    with LoadStand(find_profile(PROFILE), 8, faults={"qos1_dropped"}, core_name="faulty-core") as bad:
        cfg = FleetConfig(
            devices=8,
            connect_rate=100,
            rate=2,
            qos=1,
            duration_s=3,
            subscribers=1,
            discover=False,
            backoff=BackoffPolicy("fixed", 0.2, 0.2),
            drain_s=2,
        )
        ledger = Ledger()
        FleetEngine(make_plan(cfg, bad.identities, broker=bad.broker), [ledger]).run_sync()
    s = ledger.summary()
    assert s.lost > 0
    problem = loss_problem(s, 1)
    assert problem is not None and "expected deliveries lost" in problem
    assert "subscriptions granted below QoS 1" in problem
    (check,) = Thresholds(max_loss_pct=0).evaluate(s, 1)
    assert not check.ok and check.id == "load.max_loss" and "QoS 1:" in check.message


def test_locust_master_with_two_workers_reports_every_operation(stand: LoadStand, tmp_path: Path) -> None:
    cfg = FleetConfig(devices=20, connect_rate=50, rate=2, qos=1, duration_s=5, subscribers=2, drain_s=2)
    plan = make_plan(cfg, stand.identities, discovery=stand.discovery)
    out = run_locust(plan, tmp_path / "locust", workers=2, user_class="FleetShardUser")
    assert out.returncodes == {"master": 0, "worker-0": 0, "worker-1": 0}
    assert len(out.records) == 2  # one shard per worker
    stats = {s["name"]: s for s in out.stats()}
    for op in ("discover", "connect", "subscribe", "publish", "receive"):
        assert stats[op]["num_requests"] > 0 and stats[op]["num_failures"] == 0, (op, stats.get(op))
    assert stats["connect"]["num_requests"] == 20
    assert stats["connect"]["total_response_time"] > 0, "locust must see real connect times"
    with (out.out_dir / "locust_stats.csv").open() as fh:
        assert any(row["Name"] == "publish" for row in csv.DictReader(fh))
    s = ledger_from(out.measurements(), [d.thing for d in plan.devices]).summary()
    assert (s.connected, s.lost, s.duplicates) == (20, 0, 0), s.load_block()
    # shards start on a shared clock; a device that connects late skips the slots it missed, never bursts
    assert 180 <= s.published <= 200 and s.received == s.expected >= 2 * 180, s.load_block()


def test_load_command_writes_the_report_and_fails_on_a_threshold(tmp_path: Path) -> None:
    argv = [
        sys.executable,
        "-m",
        "harness.load_cli",
        "--profile",
        PROFILE,
        "--devices",
        "12",
        "--rate",
        "2",
        "--qos",
        "1",
        "--duration",
        "3",
        "--connect-rate",
        "50",
        "--report-dir",
        str(tmp_path),
        "--core-fault",
        "qos1_dropped",
        "--max-loss",
        "0",
        "--min-connected",
        "100",
    ]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=180, cwd=REPO)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-3000:]
    assert "FAIL load.max_loss: QoS 1:" in out and "ok   load.min_connected" in out
    data = json.loads((tmp_path / "results.json").read_text())
    load = data["load"]
    assert load["devices"] == 12 and load["connected"] == 12 and load["lost"] > 0
    assert set(load["latency_ms"]) >= {"p50", "p95", "p99"} and set(load["generator"]) >= {"cpu_s", "rss_mb"}
    assert {t["id"]: t["outcome"] for t in data["tests"]} == {
        "load.run": "passed",
        "load.max_loss": "failed",
        "load.min_connected": "passed",
    }
    with (tmp_path / "devices.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12 and sum(int(r["lost"]) for r in rows) == load["lost"]
    first = json.loads((tmp_path / "measurements.jsonl").open().readline())
    assert set(first) == {"request_type", "name", "response_time", "response_length", "exception", "context"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--devices", "0"], "--devices"),
        (["--devices", "5", "--backoff", "sometimes"], "--backoff"),
        (["--devices", "5", "--engine", "locust", "--storm", "restart"], "--storm"),
    ],
)
def test_load_command_bad_input_exits_2(args: list[str], message: str, tmp_path: Path) -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.load_cli",
            "--profile",
            PROFILE,
            *args,
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr
