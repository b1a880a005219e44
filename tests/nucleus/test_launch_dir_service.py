"""The service starts the loader through ``alts/current``, as Greengrass V2 does (issue #8).

Why it matters: a core whose ``alts/current`` is missing (a cut inside a non-atomic switch) or whose loader
was deleted must not start - those are field failures the power-loss suite has to be able to see - while a
first install (``alts/init`` + ``current``) and a prepared update (``alts/new``) start as before.
On the host (the agent is stdlib Python), in seconds.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from nucleus_support import MakeNucleus

from harness.core.nucleus.device.alts import LaunchDirs
from harness.core.nucleus.device.control import read_pid
from harness.core.nucleus.driver import NucleusDriver
from harness.errors import TargetError


def _root(driver: NucleusDriver) -> Path:
    return Path(driver.cli.root)


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_first_install_sets_up_init_and_the_service_runs_its_loader(make_nucleus: MakeNucleus) -> None:
    driver = make_nucleus()
    root = _root(driver)
    assert LaunchDirs(str(root)).target("current") == "init"
    loader = root / "alts" / "init" / "distro" / "bin" / "loader"
    assert loader.is_file() and os.access(loader, os.X_OK)
    pid = read_pid(str(root))
    assert pid is not None, "the service's pid file does not name a running loader"
    assert f"{root}/alts/current/distro/bin/loader" in _cmdline(pid)
    driver.stop(timeout=20)
    assert read_pid(str(root)) is None and not (root / "run" / "nucleus.pid").exists()


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("no_current", "(alts: no current, new -> init; dirs: init)"),
        ("no_loader", "(alts: current -> init; dirs: init)"),
    ],
)
def test_core_cannot_start_without_the_loader_of_current(
    make_nucleus: MakeNucleus, damage: str, expected: str
) -> None:
    """A missing ``current`` is not relinked from ``new`` (nothing outside alts/current runs to do it)."""
    driver = make_nucleus(start=False)
    root = _root(driver)
    alts = LaunchDirs(str(root))
    if damage == "no_current":
        alts.set("new", "init")
        alts.remove("current")
    else:
        (root / "alts" / "init" / "distro" / "bin" / "loader").unlink()
    with pytest.raises(TargetError) as err:
        driver.start(timeout=20)
    message = str(err.value)
    assert f"nucleus failed to start: no loader {root}/alts/current/distro/bin/loader {expected}" in message
    assert read_pid(str(root)) is None
    assert alts.target("current") == (None if damage == "no_current" else "init")  # nothing was relinked


def test_prepared_update_link_is_activated_by_the_loader_of_current(make_nucleus: MakeNucleus) -> None:
    """``alts/new`` (what a nucleus update leaves before its restart) still becomes current on start."""
    driver = make_nucleus(start=False)
    root = _root(driver)
    alts = LaunchDirs(str(root))
    shutil.copytree(root / "alts" / "init", root / "alts" / "copy")  # a second launch dir, same version
    alts.set("new", "copy")
    driver.start(timeout=20)
    assert (alts.target("current"), alts.target("old"), alts.has("new")) == ("copy", "init", False)
    assert "launch-dir-switch" in (root / "logs" / "loader.log").read_text()
