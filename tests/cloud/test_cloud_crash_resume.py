"""SIGKILL in the middle of a bulk device task, then resume: registry consistent, counts right."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from harness.cloud.api import Cloud

REPO = Path(__file__).resolve().parents[2]
COUNT = 1500


def _successes(db: Path) -> int:
    with sqlite3.connect(db, timeout=10) as conn:
        row = conn.execute(
            "SELECT count(*) FROM task_items i JOIN tasks t ON t.id = i.task_id "
            "WHERE t.kind = 'device' AND i.status = 'Success'"
        ).fetchone()
    return int(row[0])


def _start(state: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cloud.cli", "--state", str(state), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _kill_when(proc: subprocess.Popen[bytes], db: Path, at_least: int, timeout: float = 120) -> int:
    """SIGKILL the process (and the key-generation workers it started) once enough items committed."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the task finished before it could be killed; raise COUNT"
            if db.exists() and _successes(db) >= at_least:
                break
            time.sleep(0.01)
        else:
            raise AssertionError(f"fewer than {at_least} items within {timeout} s")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    return _successes(db)


def _assert_consistent(cloud: Cloud) -> None:
    report = cloud.check()
    assert report.ok, report.problems
    # every item marked Success has its device, and every device belongs to a Success item
    done = {
        i.name
        for t in cloud.registry.tasks(kind="device")
        for i in cloud.registry.task_items(t.id)
        if i.status == "Success"
    }
    assert done == set(cloud.devices())


def test_sigkill_mid_task_then_resume(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Cloud(state, workers=1) as cloud:
        cloud.provision_core("Core", ["127.0.0.1:8883"])
    db = state / "registry.db"

    first = _start(
        state,
        "provision",
        "devices",
        "--core",
        "Core",
        "--count",
        str(COUNT),
        "--prefix",
        "k-",
        "--batch-size",
        "50",
        "--workers",
        "2",
    )
    killed_at = _kill_when(first, db, at_least=200)
    assert 200 <= killed_at < COUNT

    with Cloud(state, workers=1) as cloud:
        _assert_consistent(cloud)  # orphaned files of the uncommitted batch are allowed, half devices are not
        (task,) = [t for t in cloud.tasks() if "coreName" in t]
        assert task["taskStatus"] == "InProgress" and task["summary"]["success"] == killed_at

    second = _start(state, "provision", "resume")  # resume in another process, and kill that one too
    killed_again = _kill_when(second, db, at_least=killed_at + 200)

    with Cloud(state, workers=2) as cloud:
        _assert_consistent(cloud)
        assert cloud.task(task["id"], include_items=False)["summary"]["success"] == killed_again
        assert cloud.resume_tasks() == [task["id"]]
        final = cloud.wait_task(task["id"], timeout=300, include_items=False)
        assert final["taskStatus"] == "Success"
        assert final["summary"] == {
            "total": COUNT,
            "success": COUNT,
            "failure": 0,
            "waiting": 0,
            "inProgress": 0,
        }
        assert final["batchesComplete"] == final["batchesTotal"] == COUNT // 50
        assert len(cloud.devices("Core")) == COUNT
        _assert_consistent(cloud)
        cloud.repair()
        assert not cloud.check().orphans
