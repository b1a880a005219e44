"""pytest fixtures for core-software update scenarios (scenarios/ota)."""

from __future__ import annotations
