"""`harness setup`: its package list covers what the harness builds with, and it is idempotent."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness import prereqs
from harness.core.authplugin.build import apt_packages
from harness.prereqs import APT_PACKAGES, plan


def test_setup_installs_what_the_broker_plugin_needs() -> None:
    assert set(apt_packages()) <= set(APT_PACKAGES)


def test_setup_is_idempotent_on_a_prepared_machine() -> None:
    assert plan() == []  # the test session itself ran `harness setup` first (tox commands_pre)
    res = subprocess.run(
        [sys.executable, "-m", "harness.cli", "setup"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0 and "everything targets need is installed and enabled" in res.stdout


def test_non_root_gets_the_exact_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prereqs.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(
        prereqs, "plan", lambda: [prereqs.Step("install x", ["apt-get", "install", "-y", "x"])]
    )
    monkeypatch.setattr(prereqs, "binfmt_steps", lambda: [])
    lines: list[str] = []
    assert prereqs.run_setup(echo=lines.append) == 2
    assert any("apt-get install -y x" in line for line in lines), lines
