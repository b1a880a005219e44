"""``harness load`` end to end on native-x86_64 for what issues #6 and #9 must show: revoked devices appear
as failed, a storm run saves a calibration the next storm run is predicted from, locust's headless CSV is read
back, and the report carries the plots. Small fleets, seconds each."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.qemu
PROFILE = "native-x86_64"
REPO = Path(__file__).resolve().parents[2]


def harness_load(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "harness.load_cli", "--profile", PROFILE, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def results(report: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((report / "results.json").read_text())
    return data


def test_revoked_devices_show_up_as_failed_and_fail_the_check(tmp_path: Path) -> None:
    res = harness_load(
        "--devices", "12", "--revoked", "3", "--rate", "2", "--duration", "3", "--connect-rate", "50",
        "--min-connected", "100", "--max-memory-drift", "50", "--report-dir", str(tmp_path),
    )  # fmt: skip
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-3000:]
    assert "FAIL load.min_connected: 9 of 12 devices connected" in out, out[-3000:]
    assert "failed discoveries" in out, out[-3000:]
    # a few seconds cannot show a drift: the soak check says so instead of passing
    assert "FAIL load.max_memory_drift: too few memory samples" in out, out[-3000:]
    load = results(tmp_path)["load"]
    assert isinstance(load, dict) and load["failed"] == 3 and load["revoked"] == 3, load
    with (tmp_path / "devices.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    failed = [r for r in rows if r["connects"] == "0"]
    assert len(failed) == 3 and all(int(r["discover_failures"]) >= 1 for r in failed), failed
    memory = load["memory"]
    core = [m for m in memory["core_rss_mb"] if m is not None]
    assert len(core) >= 3 and all(m > 0 for m in core), memory
    html = (tmp_path / "index.html").read_text()
    for title in ("connections over time", "throughput over time", "delivery latency", "memory over time"):
        assert title in html, f"the load report lacks the plot {title!r}"


def test_a_storm_run_calibrates_the_model_that_predicts_the_next_storm(tmp_path: Path) -> None:
    # A short fixed retry keeps every device knocking while the core restarts, so even 150 devices saturate
    # it when it returns: the calibration measures capacity, not how fast the devices arrived.
    common = ("--rate", "0.2", "--duration", "6", "--storm", "restart", "--storm-at", "2", "--no-discovery",
              "--backoff", "fixed:0.05:0.05", "--connect-rate", "50")  # fmt: skip
    first = tmp_path / "calibrate"
    res = harness_load("--devices", "150", *common, "--report-dir", str(first))
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    cal = json.loads((first / "calibration.json").read_text())
    assert cal["format"] == "gg-harness-calibration" and cal["accept_rate_per_s"] > 0, cal
    assert cal["outage_s"] > 0 and len(cal["handshake_ms"]["samples"]) == 150, cal
    second = tmp_path / "predict"
    res = harness_load(
        "--devices", "300", *common, "--calibration", str(first / "calibration.json"),
        "--report-dir", str(second),
    )  # fmt: skip
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "load: model predicted t95" in out, out[-3000:]
    load = results(second)["load"]
    assert isinstance(load, dict)
    model = load["model"]
    # Two small storms on a machine shared with the other tests differ by up to ~65 % in accept rate alone
    # (measured: tests running beside them change the core's share of the CPU between the two runs), so this
    # bound only catches a broken pipeline (units, no outage, a model that never converges). The bridge
    # itself is held to 5 % on synthetic storms (test_fleet_calibrate.py), and the >= 5,000-device
    # validation against real storms is bench/bench_storm.py.
    assert model["error_pct"] is not None and abs(model["error_pct"]) < 100, model
    assert model["calibration_devices"] == 150 and model["devices"] == 300, model


def test_locust_headless_run_csv_is_read_back(tmp_path: Path) -> None:
    res = harness_load(
        "--devices", "10", "--rate", "1", "--duration", "3", "--connect-rate", "20", "--engine", "locust",
        "--locust-workers", "0", "--report-dir", str(tmp_path),
    )  # fmt: skip
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    load = results(tmp_path)["load"]
    assert isinstance(load, dict)
    stats = load["locust_csv"]
    assert stats["connect"]["requests"] == 10 and stats["connect"]["failures"] == 0, stats
    assert stats["connect"]["median_ms"] > 0, "locust must see real connect times"
    assert stats["publish"]["requests"] == load["published"], (stats, load["published"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--devices", "5", "--revoked", "6"], "--revoked must be 0..5"),
        (["--devices", "5", "--calibration", "x.json"], "--calibration needs --storm"),
        (["--devices", "5", "--storm", "restart", "--calibration", "/nonexistent/cal.json"], "cal.json"),
    ],
)
def test_bad_revoked_or_calibration_exits_2(args: list[str], message: str, tmp_path: Path) -> None:
    res = harness_load(*args, "--report-dir", str(tmp_path), timeout=60)
    assert res.returncode == 2, res.stdout + res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_ctrl_c_stops_the_load_and_cleans_up(tmp_path: Path) -> None:
    """SIGINT mid-telemetry: the devices disconnect, the core and target go, nothing is left pending."""
    import signal
    import time

    argv = [sys.executable, "-m", "harness.load_cli", "--profile", PROFILE, "--devices", "60", "--rate", "2",
            "--duration", "120", "--connect-rate", "50", "--report-dir", str(tmp_path)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            if "telemetry for" in line or time.monotonic() > deadline:
                break
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0, out[-2000:]
    for noise in ("Task was destroyed", "Event loop is closed"):
        assert noise not in err, err[-3000:]
    data = results(tmp_path)
    assert data["partial"] is True, "an interrupted run leaves a partial report"
