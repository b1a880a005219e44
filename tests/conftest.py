"""Test-session setup for the harness's own tests: an isolated state directory and a leak check at the end."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

FIXTURE_PROFILES = Path(__file__).resolve().parents[1] / "fixtures" / "profiles"


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and "HARNESS_STATE_DIR" not in os.environ:
        os.environ["HARNESS_STATE_DIR"] = tempfile.mkdtemp(prefix="gg-harness-tests-", dir="/var/tmp")
    paths = [
        str(FIXTURE_PROFILES),
        *filter(None, os.environ.get("HARNESS_PROFILE_PATH", "").split(os.pathsep)),
    ]
    os.environ["HARNESS_PROFILE_PATH"] = os.pathsep.join(dict.fromkeys(paths))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After all workers: nothing the tests started may be left (processes, mounts, cgroups, dirs)."""
    if hasattr(session.config, "workerinput"):
        return
    from harness.leaks import find_leaks

    base = Path(os.environ["HARNESS_STATE_DIR"])
    leaks = find_leaks(base)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if leaks:
        if reporter is not None:
            reporter.write_line("LEAK CHECK FAILED: the tests left behind:", red=True)
            for line in leaks:
                reporter.write_line(f"  {line}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif reporter is not None:
        reporter.write_line(f"leak check: no process, loop device, cgroup or target directory left ({base})")
