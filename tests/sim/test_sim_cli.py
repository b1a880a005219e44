"""``harness simulate`` end to end: flags in, a readable harness report out; bad input exits 2."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.report import Run
from harness.report.results_json import parse_results
from harness.simulate_cli import main


def test_sweep_writes_a_report_with_plots_and_raw_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    rc = main(
        [
            "--devices", "2000", "--sweep", "exponential,full", "--event", "rotation", "--outage-s", "0",
            "--base-ms", "100", "--cap-ms", "10000", "--handshake-ms", "20,30", "--concurrency", "4",
            "--connect-timeout-ms", "2000", "--seed", "3", "--workers", "2", "--report-dir", str(out),
        ]
    )  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert "exponential" in printed and "full" in printed and str(out / "index.html") in printed

    results = (out / "results.json").read_text(encoding="utf-8")
    doc = parse_results(results, "results.json")  # validates against the harness's results.json model
    assert [t.id for t in doc.tests] == ["simulate.exponential", "simulate.full"]
    assert {t.suite for t in doc.tests} == {"simulate"} and all(t.informative for t in doc.tests)
    row = doc.tests[1]
    assert float(row.properties["t95_s"]) > 0 and row.properties["devices"] == "2000"
    assert "attempts per device" in row.evidence
    run = Run.read(out)
    assert not run.partial and run.profiles == ["fleet-model"]

    html = (out / "index.html").read_text(encoding="utf-8")
    assert html.count("<svg") >= 2 and 'id="simulate"' in html
    assert "Reconnected fraction" in html and "queue length" in html
    assert re.search(r"<polyline [^>]*points=\"[0-9., ]+\"", html)
    assert (out / "junit.xml").exists()

    raw = json.loads((out / "simulate.json").read_text(encoding="utf-8"))
    assert raw["format"] == "gg-harness-simulate" and raw["run_id"] == run.run_id
    by_policy = {r["policy"]: r for r in raw["results"]}
    assert by_policy["full"]["config"]["concurrency"] == 4
    assert by_policy["full"]["config"]["base_s"] == pytest.approx(0.1)
    assert by_policy["exponential"]["t95_s"] > by_policy["full"]["t95_s"]
    assert len(by_policy["full"]["series"]["queue"]) > 10


def test_calibration_file_sets_the_core_and_flags_override_it(tmp_path: Path) -> None:
    cal = tmp_path / "cal.json"
    cal.write_text(
        json.dumps({"handshake_ms": {"median": 10, "p95": 10}, "accept_rate_per_s": 200, "concurrency": 3}),
        encoding="utf-8",
    )
    out = tmp_path / "r"
    argv = ["--devices", "300", "--policy", "full", "--calibration", str(cal), "--concurrency", "5"]
    assert main([*argv, "--event", "rotation", "--outage-s", "0", "--report-dir", str(out)]) == 0
    cfg = json.loads((out / "simulate.json").read_text(encoding="utf-8"))["results"][0]["config"]
    assert cfg["concurrency"] == 5 and cfg["rate_limit_per_s"] == 200
    assert cfg["handshake"]["median_s"] == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--devices", "10"], "give --policy P or --sweep"),
        (["--devices", "10", "--sweep", "full,bogus"], "unknown policy bogus"),
        (["--devices", "0", "--policy", "full"], "must be >= 1"),
        (["--devices", "10", "--policy", "full", "--handshake-ms", "30,20"], "below the median"),
        (["--devices", "10", "--policy", "full", "--base-ms", "5000", "--cap-ms", "100"], "--cap-ms"),
        (["--devices", "10", "--policy", "full", "--calibration", "/nonexistent/cal.json"], "cannot read"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        rc = main([*argv, "--report-dir", str(tmp_path / "r")])
    except SystemExit as exc:  # argparse type errors
        rc = int(exc.code or 0)
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
