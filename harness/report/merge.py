"""Combine the reports of parallel workers (pytest-xdist, one per profile) into one run.

Each worker writes its own report directory so workers never race on a file; the controller merges them at the
end. Conflicts (the same test twice, one profile with two different property sets) are errors rather than a
silent choice, because a conformance report that quietly drops a result is worse than none.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from harness.errors import InputError
from harness.report.run import Run, new_run_id


def merge_runs(runs: Sequence[Run], *, run_id: str | None = None) -> Run:
    """One run holding every test of ``runs``; partial if any part is (a lost worker leaves a gap).

    ``run_id`` defaults to the parts' common id (the controller hands one to every worker), else a new one.
    """
    if not runs:
        raise InputError("nothing to merge: no results given")
    versions = {r.harness_version for r in runs}
    if len(versions) > 1:
        raise InputError(f"cannot merge results of different harness versions: {sorted(versions)}")
    ids = {r.run_id for r in runs}
    started = min(r.started for r in runs)
    merged = Run(
        run_id=run_id or (ids.pop() if len(ids) == 1 else new_run_id(started)),
        started=started,
        harness_version=runs[0].harness_version,
    )
    seen: dict[tuple[str, str], int] = {}
    loads: list[dict[str, Any]] = []
    for index, part in enumerate(runs):
        for profile in part.profiles:
            merged.add_profile(profile)
        for profile, props in part.profile_properties.items():
            known = merged.profile_properties.get(profile)
            if known is not None and known != props:
                raise InputError(
                    f"profile {profile!r} has different properties in part {index}: {props} != {known}"
                )
            merged.add_profile(profile, props)
        for record in part.tests:
            key = (record.profile, record.id)
            if key in seen:
                raise InputError(
                    f"test {record.id!r} on profile {record.profile!r} is in parts {seen[key]} and {index}"
                )
            seen[key] = index
            merged.add(record)
        if part.load is not None:
            loads.append(part.load)
    if len(loads) > 1:
        raise InputError("cannot merge the load blocks of several load runs (percentiles do not add up)")
    merged.load = loads[0] if loads else None
    finished = [r.finished for r in runs if r.finished is not None]
    merged.finished = max(finished) if finished else None
    merged.partial = any(r.partial for r in runs)
    merged.partial_reason = "; ".join(dict.fromkeys(r.partial_reason for r in runs if r.partial_reason))
    return merged


def merge_report_dirs(part_dirs: Sequence[Path], into: Path, *, run_id: str | None = None) -> Run:
    """Read each part's results.json and merge them, rewriting log paths to be relative to ``into``.

    The merged run is returned, not written: call ``write(into)`` on it (the caller may add to it first).
    """
    runs = []
    for part_dir in part_dirs:
        run = Run.read(part_dir)
        for record in run.tests:
            record.log = rebase_log(record.log, part_dir, into)
        runs.append(run)
    return merge_runs(runs, run_id=run_id)


def rebase_log(log: str, part_dir: Path, into: Path) -> str:
    """``log`` (relative to ``part_dir``) made relative to ``into``; absolute paths and URLs are kept."""
    if not log or "://" in log or PurePosixPath(log).is_absolute():
        return log
    target = (part_dir / log).resolve()
    return Path(os.path.relpath(target, into.resolve())).as_posix()
