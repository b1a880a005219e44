"""Fixtures for the nucleus tests: the agent run on the host (a LocalTarget) with small timeouts.

The agent is stdlib-only Python, so its lifecycle rules are tested here in seconds, through the same
driver and CLI as on a board; the scenarios then run it on real (emulated) targets.
"""

from __future__ import annotations

import platform
import shutil
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from nucleus_support import FAST, MakeNucleus

from harness.core.nucleus.device.settings import AgentSettings
from harness.core.nucleus.driver import NucleusDriver
from harness.errors import TargetError
from harness.profiles import DeviceProfile
from harness.targets.local import LocalTarget


@pytest.fixture
def host_target() -> Iterator[LocalTarget]:
    target = LocalTarget(DeviceProfile(name="host-nucleus", arch=platform.machine(), transport="local"))
    target.power_on()
    try:
        yield target
    finally:
        target.close()


@pytest.fixture
def make_nucleus(host_target: LocalTarget) -> Iterator[MakeNucleus]:
    """Install and start an agent in a fresh root (short: the CLI socket path must fit a Unix socket)."""
    made: list[NucleusDriver] = []
    roots: list[str] = []

    def make(*faults: str, start: bool = True, root: str | None = None, **settings: Any) -> NucleusDriver:
        if root is None:
            root = tempfile.mkdtemp(prefix="ggn-", dir="/tmp")
            roots.append(root)
        values = {**FAST, **settings}
        driver = NucleusDriver.reference(
            host_target, root, faults=faults, settings=AgentSettings(**values), python=sys.executable
        )
        driver.install()
        if start:
            driver.start(timeout=30)
        made.append(driver)
        return driver

    yield make
    for driver in made:
        if host_target.is_on:
            try:
                driver.stop(timeout=10)
            except TargetError:
                pass
    host_target.power_cut()  # whatever a test left running dies with the target's cgroup
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)
