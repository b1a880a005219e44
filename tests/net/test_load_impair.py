"""``harness load --impair``: the same small load with and without an impaired fleet link on native-x86_64.

What issue #12 must show from a load run: the latency percentiles move by the delay that was applied, the
report records the impairment with its time and the core namespace's TCP retransmissions, and the run without
``--impair`` has no network block and no such delay (the harness adds no noise of its own)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.qemu
REPO = Path(__file__).resolve().parents[2]
LOAD = ["--profile", "native-x86_64", "--devices", "10", "--rate", "2", "--qos", "1", "--duration", "5",
        "--connect-rate", "20", "--subscribers", "1", "--no-discovery"]  # fmt: skip


def run_load(report: Path, *extra: str) -> dict[str, Any]:
    argv = [sys.executable, "-m", "harness.load_cli", *LOAD, "--report-dir", str(report), *extra]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    load: dict[str, Any] = json.loads((report / "results.json").read_text())["load"]
    return load


def test_impaired_load_shifts_latency_and_records_the_impairment(tmp_path: Path) -> None:
    plain = run_load(tmp_path / "plain")
    impaired = run_load(tmp_path / "impaired", "--impair", "delay=100ms,loss=2%")
    assert "network" not in plain, "a run without --impair must not touch the network"
    # publisher -> core -> subscriber crosses the impaired link twice: at least 200 ms
    assert impaired["latency_ms"]["p50"] >= 190, impaired["latency_ms"]
    assert plain["latency_ms"]["p50"] < 100, plain["latency_ms"]
    assert impaired["lost"] == 0 and plain["lost"] == 0
    net = impaired["network"]
    actions = [(e["action"], e["link"]) for e in net["events"]]
    assert ("impair", "fleet") in actions, net["events"]
    impair_event = next(e for e in net["events"] if e["action"] == "impair")
    assert "delay=100ms" in json.dumps(impair_event) and impair_event["at_unix"] > 0, impair_event
    assert "RetransSegs" in net["tcp_core_ns"], net["tcp_core_ns"]
    records = (tmp_path / "impaired" / "measurements.jsonl").read_text()
    assert '"request_type": "net"' in records or '"request_type":"net"' in records


def test_bad_impairment_spec_exits_2_naming_the_field(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "harness.load_cli", *LOAD, "--report-dir", str(tmp_path)]
    argv += ["--impair", "lag=5"]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "'lag'" in res.stderr and "allowed fields: delay" in res.stderr and "Traceback" not in res.stderr
