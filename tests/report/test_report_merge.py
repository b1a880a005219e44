"""Merging the results.json of parallel workers into one run."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from report_samples import LOAD, build_run, record

from harness.errors import InputError
from harness.report import Run, merge_report_dirs, merge_runs, summarize


def split_by_profile(run: Run) -> list[Run]:
    """What two xdist workers (one profile each) would have written."""
    parts = []
    for n, profile in enumerate(run.profiles):
        part = Run(run_id=run.run_id, started=run.started + timedelta(seconds=n))
        part.load = run.load if n == 0 else None
        part.add_profile(profile, run.profile_properties.get(profile))
        for rec in run.tests:
            if rec.profile == profile:
                part.add(replace(rec))
        part.finish(now=run.started.replace(minute=50 + n))
        parts.append(part)
    return parts


def test_merge_dirs_combines_and_rebases_logs(sample_run: Run, tmp_path: Path) -> None:
    dirs = []
    for n, part in enumerate(split_by_profile(sample_run)):
        part_dir = tmp_path / "parts" / f"gw{n}"
        part.write(part_dir)
        dirs.append(part_dir)
    merged = merge_report_dirs(dirs, tmp_path)
    merged.write(tmp_path)
    back = Run.read(tmp_path)
    assert back.run_id == sample_run.run_id
    assert back.profiles == ["qemu-aarch64", "rpi4"]
    assert back.profile_properties == sample_run.profile_properties
    assert summarize(back.tests) == summarize(sample_run.tests)
    assert not back.partial
    assert back.started == sample_run.started and back.finished == sample_run.started.replace(minute=51)
    ota = next(r for r in back.tests if r.id == "board.ota_commands" and r.profile == "qemu-aarch64")
    assert ota.log == "parts/gw0/logs/qemu-aarch64/board.ota_commands.log"


def test_rebase_keeps_absolute_paths_and_urls(tmp_path: Path) -> None:
    run = Run.start(["rpi4"])
    run.add(record("board.a", "rpi4", "passed", log="/var/log/a.log"))
    run.add(record("board.b", "rpi4", "passed", log="https://ci.example/b.log"))
    run.add(record("board.c", "rpi4", "passed", log=""))
    run.write(tmp_path / "w")
    logs = [r.log for r in merge_report_dirs([tmp_path / "w"], tmp_path).tests]
    assert logs == ["/var/log/a.log", "https://ci.example/b.log", ""]


def test_one_partial_part_makes_the_merge_partial(sample_run: Run) -> None:
    first, second = split_by_profile(sample_run)
    second.finish(partial=True, reason="worker gw1 lost")
    merged = merge_runs([first, second])
    assert merged.partial and merged.partial_reason == "worker gw1 lost"


def test_run_ids(sample_run: Run) -> None:
    first, second = split_by_profile(sample_run)
    assert merge_runs([first, second]).run_id == sample_run.run_id
    assert merge_runs([first, second], run_id="explicit").run_id == "explicit"
    second.run_id = "other"
    assert merge_runs([first, second]).run_id not in {"other", sample_run.run_id}


def test_conflicts_are_errors(sample_run: Run) -> None:
    first, second = split_by_profile(sample_run)
    with pytest.raises(InputError, match="nothing to merge"):
        merge_runs([])
    with pytest.raises(InputError, match=r"board\.arch.*parts 0 and 1"):
        merge_runs([first, first])
    clash = Run.start({"qemu-aarch64": {"rootfs_key": "other"}})
    with pytest.raises(InputError, match="different properties"):
        merge_runs([first, clash])
    newer = Run.start(["x"])
    newer.harness_version = "9.9.9"
    with pytest.raises(InputError, match="harness versions"):
        merge_runs([first, newer])
    first.load, second.load = dict(LOAD), dict(LOAD)
    with pytest.raises(InputError, match="load blocks"):
        merge_runs([first, second])


def test_single_load_block_is_kept() -> None:
    first, second = split_by_profile(build_run(load=True))
    second.load = None
    assert merge_runs([first, second]).load == LOAD
