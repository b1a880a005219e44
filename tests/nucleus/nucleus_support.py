"""Helpers of the nucleus and OTA tests: small agent timeouts, recipes written on the fly, the agent on the
host (fixtures ``host_target``/``make_nucleus``, imported by tests/nucleus and tests/ota conftests) and
``run_suite``, which runs a scenario suite as a subprocess the way a user would and reads its results.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.core.nucleus.device.settings import AgentSettings
from harness.core.nucleus.driver import NucleusDriver
from harness.errors import TargetError
from harness.profiles import DeviceProfile
from harness.targets.local import LocalTarget

REPO = Path(__file__).resolve().parents[2]

#: Small timeouts so every rule is exercised in about a second.
FAST = {
    "tick": 0.05,
    "deployment_stable": 0.3,
    "kill_grace": 1.0,
    "install_timeout": 1.5,
    "startup_timeout": 1.5,
    "shutdown_timeout": 1.5,
    "recover_timeout": 1.5,
    "deployment_timeout": 20.0,
}
WAIT_S = 20.0


MakeNucleus = Callable[..., NucleusDriver]


def write_recipe(
    directory: Path,
    name: str,
    version: str = "1.0.0",
    lifecycle: dict[str, Any] | None = None,
    *,
    dependencies: dict[str, dict[str, str]] | None = None,
    config: dict[str, Any] | None = None,
    manifests: list[dict[str, Any]] | None = None,
) -> Path:
    """A JSON recipe in ``directory`` (created); ``lifecycle`` goes into one manifest for any platform."""
    directory.mkdir(parents=True, exist_ok=True)
    recipe: dict[str, Any] = {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": name,
        "ComponentVersion": version,
        "Manifests": manifests
        if manifests is not None
        else [{"Platform": {"os": "linux"}, "Lifecycle": lifecycle or {}}],
    }
    if dependencies:
        recipe["ComponentDependencies"] = dependencies
    if config is not None:
        recipe["ComponentConfiguration"] = {"DefaultConfiguration": config}
    path = directory / f"{name}-{version}.json"
    path.write_text(json.dumps(recipe, indent=1))
    return path


@pytest.fixture
def host_target() -> Iterator[LocalTarget]:
    target = LocalTarget(
        DeviceProfile(name="host-nucleus", arch=platform.machine(), transport="local", os="ubuntu")
    )
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


def run_suite(
    suite: str,
    report: Path,
    profile: str,
    keyword: str = "test_",
    faults: tuple[str, ...] = (),
    timeout: float = 600,
) -> tuple[int, dict[str, object], str]:
    """Run ``scenarios/<suite>`` (``-k keyword``) with nucleus faults: (exit status, results, output)."""
    argv = [
        sys.executable,
        "-m",
        "pytest",
        str(REPO / "scenarios" / suite),
        "-p",
        "no:cacheprovider",
        "-q",
        "-k",
        keyword,
        "--profile",
        profile,
        "--report-dir",
        str(report),
    ]
    for f in faults:
        argv += ["--nucleus-fault", f]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    data = json.loads((report / "results.json").read_text())
    return res.returncode, data, res.stdout + res.stderr
