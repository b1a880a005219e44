"""Devices under test, as capabilities: run a command, move files, control power, report facts."""

from harness.targets.base import Facts, RunResult, Target

__all__ = ["Facts", "RunResult", "Target"]
