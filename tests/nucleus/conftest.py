"""Fixtures for the nucleus tests: the agent run on the host (a LocalTarget) with small timeouts.

The agent is stdlib-only Python, so its lifecycle rules are tested here in seconds, through the same
driver and CLI as on a board; the scenarios then run it on real (emulated) targets. The fixtures live in
nucleus_support.py, shared with tests/ota.
"""

from __future__ import annotations

from nucleus_support import host_target, make_nucleus

__all__ = ["host_target", "make_nucleus"]
