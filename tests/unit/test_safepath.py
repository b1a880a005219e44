"""Paths inside a target's root never resolve to the host's files."""

from __future__ import annotations

import os
from pathlib import Path

from harness.targets.safepath import resolve_in_root


def test_absolute_symlink_stays_inside_root(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "var").mkdir()
    os.symlink("/run", tmp_path / "var" / "run")
    assert resolve_in_root(tmp_path, "/var/run/x.pid") == tmp_path / "run" / "x.pid"


def test_dotdot_cannot_escape(tmp_path: Path) -> None:
    assert resolve_in_root(tmp_path, "/../../etc/passwd") == tmp_path / "etc" / "passwd"
    os.symlink("../../../../etc", tmp_path / "up")
    assert resolve_in_root(tmp_path, "/up/shadow") == tmp_path / "etc" / "shadow"


def test_last_component_symlink_kept_when_asked(tmp_path: Path) -> None:
    os.symlink("/elsewhere", tmp_path / "link")
    assert resolve_in_root(tmp_path, "/link", follow_last=False) == tmp_path / "link"
    assert resolve_in_root(tmp_path, "/link") == tmp_path / "elsewhere"
