"""pytest fixtures for power-loss scenarios: fault models, cut points, invariants (scenarios/power_loss)."""

from __future__ import annotations
