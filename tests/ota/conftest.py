"""Fixtures for the OTA tests: the nucleus agent on the host, shared with tests/nucleus (nucleus_support)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "nucleus"))

from nucleus_support import host_target, make_nucleus

__all__ = ["host_target", "make_nucleus"]
