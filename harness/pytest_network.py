"""pytest fixtures for network namespaces and impairment between fleet and core (scenarios/network)."""

from __future__ import annotations
