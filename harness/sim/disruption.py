"""The disruption at t = 0: when each device notices it, and what an attempt meets while the core is down.

Shared by both engines so that they disagree only through their random draws.
"""

from __future__ import annotations

import numpy as np

from harness.sim.config import SimConfig


def down_until(config: SimConfig) -> float:
    """End of the window in which every attempt fails without reaching the accept queue."""
    return config.outage_s


def down_failure_s(config: SimConfig) -> float:
    """How long an attempt against a down core takes to fail: a silent core lets the client time out, a
    restarting one refuses at once."""
    return config.connect_timeout_s if config.event == "outage" else config.refused_s


def detection_times(config: SimConfig, phase: np.ndarray) -> np.ndarray:
    """When each device notices the disruption, given its keep-alive phase (uniform in [0, 1)).

    Outage: the device pings at ``phase * keepalive``; if the core is back it gets a reset at once, else it
    gives up after the ping timeout. Rotation: the core closes every connection, so everyone knows at t = 0.
    """
    if config.event == "rotation":
        return np.zeros(phase.shape[0])
    ping = phase * config.keepalive_s
    timeout = config.ping_timeout_fraction * config.keepalive_s
    return np.where(ping >= down_until(config), ping, ping + timeout)


def detection_time(config: SimConfig, phase: float) -> float:
    """``detection_times`` for one device (the reference model)."""
    return float(detection_times(config, np.array([phase]))[0])
