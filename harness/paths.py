"""Where the harness keeps things: caches outside the repository, reports inside it.

Root file systems are large and shared between runs and checkouts, so they live in a cache directory
(``HARNESS_CACHE_DIR`` or ``~/.cache/gg-harness``); per-target state lives under ``HARNESS_STATE_DIR``
(default ``/var/tmp/gg-harness``) because it holds disk images that must survive a power cut.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROFILES_DIR = REPO_ROOT / "device_profiles"
FIXTURES_DIR = REPO_ROOT / "fixtures"
REPORTS_DIR = REPO_ROOT / "reports"


def cache_dir() -> Path:
    """Directory for cached root file systems (created on demand)."""
    env = os.environ.get("HARNESS_CACHE_DIR")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gg-harness"
    base.mkdir(parents=True, exist_ok=True)
    return base


def state_dir() -> Path:
    """Directory for per-target state such as disk images (created on demand)."""
    base = Path(os.environ.get("HARNESS_STATE_DIR", "/var/tmp/gg-harness"))
    base.mkdir(parents=True, exist_ok=True)
    return base
