"""Run: writing the three files atomically and cheaply, the partial flag, reading back, the exit status."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import pytest
from report_samples import record

from harness.errors import EXIT_FAILED, EXIT_OK, InputError
from harness.records import Outcome
from harness.report import Run, exit_status, new_run_id

REPO = Path(__file__).resolve().parents[2]


def test_write_creates_the_three_files_and_no_temp_files(sample_run: Run, tmp_path: Path) -> None:
    out = tmp_path / "report" / "nested"
    sample_run.write(out)
    sample_run.write(out)
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "junit.xml", "results.json"]
    assert oct((out / "results.json").stat().st_mode & 0o777) == oct(0o644)


def test_run_is_partial_until_finished(sample_run: Run, tmp_path: Path) -> None:
    sample_run.write(tmp_path)
    data = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert data["partial"] is True
    sample_run.finish()
    sample_run.write(tmp_path)
    data = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert sample_run.finished is not None
    assert data["partial"] is False
    assert data["finished"] == sample_run.finished.isoformat().replace("+00:00", "Z")


def test_finish_partial_keeps_the_reason(sample_run: Run, tmp_path: Path) -> None:
    sample_run.finish(partial=True, reason="target rpi4 stopped answering")
    sample_run.write(tmp_path)
    back = Run.read(tmp_path)
    assert back.partial and back.partial_reason == "target rpi4 stopped answering"
    assert "target rpi4 stopped answering" in (tmp_path / "index.html").read_text(encoding="utf-8")


def test_write_is_cheap_enough_to_call_after_every_test(tmp_path: Path) -> None:
    run = Run.start(["a", "b"])
    for i in range(400):
        outcome: Outcome = "failed" if i % 7 == 0 else "passed"
        run.add(record(f"board.t{i}", "ab"[i % 2], outcome, evidence="line\n" * 40))
    start = time.perf_counter()
    run.write(tmp_path)
    assert time.perf_counter() - start < 1.0


def test_killed_run_leaves_a_readable_partial_report(tmp_path: Path) -> None:
    """A writer killed with SIGKILL mid-run; a reader polling meanwhile never sees a torn file."""
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from harness.records import TestRecord
        from harness.report import Run

        run = Run.start(["qemu-aarch64"], run_id="20260105-000000-dead")
        for i in range(5000):
            run.add(TestRecord(id=f"board.t{i}", suite="board", profile="qemu-aarch64", outcome="passed",
                               evidence="x" * 2000))
            run.write(Path(sys.argv[1]))
            if i == 3:
                print("ready", flush=True)
        """
    )
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"  # bounded: the child exits after 5000 writes
        reads = 0
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            Run.read(tmp_path)  # raises on a torn or half-written file
            reads += 1
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert reads > 0
    back = Run.read(tmp_path)
    assert back.partial is True and len(back.tests) >= 4
    assert "PARTIAL / interrupted" in (tmp_path / "index.html").read_text(encoding="utf-8")
    ET.parse(tmp_path / "junit.xml")


def test_read_round_trips_a_partial_run(sample_run: Run, tmp_path: Path) -> None:
    sample_run.write(tmp_path)
    back = Run.read(tmp_path)
    assert back.partial and back.tests == sample_run.tests and back.finished is not None


def test_add_declares_profiles_and_rejects_bad_outcomes() -> None:
    run = Run.start(["qemu-aarch64"])
    run.add(record("board.arch", "rpi4", "passed"))
    assert run.profiles == ["qemu-aarch64", "rpi4"]
    with pytest.raises(ValueError, match=r"board\.arch.*'flaky'"):
        run.add(record("board.arch", "rpi4", "flaky"))  # type: ignore[arg-type]


def test_naive_times_are_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Run(run_id="x", started=datetime(2026, 1, 5))


def test_run_ids_sort_by_time() -> None:
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", new_run_id())
    assert new_run_id(datetime.fromisoformat("2026-11-23T04:45:01Z")).startswith("20261123-044501-")


def test_exit_status_follows_required_results() -> None:
    run = Run.start(["rpi4"])
    assert exit_status(run) == EXIT_OK
    run.add(record("board.arch", "rpi4", "passed"))
    run.add(record("board.skip", "rpi4", "skipped"))
    run.add(record("board.kernel_config", "rpi4", "failed", informative=True))
    run.add(record("board.tpm", "rpi4", "error", required=False))
    assert exit_status(run) == EXIT_OK
    run.add(record("board.ota", "rpi4", "error"))
    assert exit_status(run) == EXIT_FAILED


def test_exit_status_of_sample(sample_run: Run) -> None:
    assert exit_status(sample_run) == EXIT_FAILED


def test_read_of_garbage_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match=r"results\.json"):
        Run.read(tmp_path)
