"""Reconnect backoff policies, as in the AWS Architecture Blog post "Exponential Backoff And Jitter".

``n`` is the number of failed attempts so far (1 before the first retry), exactly as in the simulator
published with that post, so ``exponential`` sleeps ``min(cap, base * 2**n)``, 2 x base before the first
retry.

    none          0 (retry at once)
    fixed         base
    exponential   min(cap, base * 2**n)
    full          uniform(0, min(cap, base * 2**n))
    equal         v/2 + uniform(0, v/2) with v = min(cap, base * 2**n)
    decorrelated  sleep = min(cap, uniform(base, 3 * previous sleep)), previous sleep starting at base

Each policy exists twice, once scalar (the per-device reference model) and once over numpy arrays (the cohort
engine); tests hold the two to the same bounds so the engines back off alike.
"""

from __future__ import annotations

import random

import numpy as np

from harness.sim.config import Policy

# 2**62 * base overflows nothing and is far above any cap; capping the exponent keeps huge n harmless.
_MAX_EXPONENT = 62


def exponential_ceiling(n: int, base: float, cap: float) -> float:
    """``min(cap, base * 2**n)``, the ceiling of the exponential family."""
    return min(cap, base * 2.0 ** min(n, _MAX_EXPONENT))


def backoff_delay(
    policy: Policy, n: int, previous: float, base: float, cap: float, rng: random.Random
) -> tuple[float, float]:
    """The sleep before the next attempt after ``n`` failures; returns (sleep, state for the next call).

    The state is the previous sleep, which only decorrelated jitter uses; the others pass it through.
    """
    if policy == "none":
        return 0.0, previous
    if policy == "fixed":
        return base, previous
    if policy == "decorrelated":
        sleep = min(cap, rng.uniform(base, previous * 3))
        return sleep, sleep
    v = exponential_ceiling(n, base, cap)
    if policy == "exponential":
        return v, previous
    if policy == "full":
        return rng.uniform(0.0, v), previous
    if policy == "equal":
        return v / 2 + rng.uniform(0.0, v / 2), previous
    raise ValueError(f"unknown policy {policy!r}")


def backoff_delays(
    policy: Policy,
    n: np.ndarray,
    previous: np.ndarray,
    base: float,
    cap: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """``backoff_delay`` for many devices at once: ``n`` and ``previous`` are per-device arrays."""
    size = n.shape[0]
    if policy == "none":
        return np.zeros(size), previous
    if policy == "fixed":
        return np.full(size, base), previous
    if policy == "decorrelated":
        sleep = np.minimum(cap, rng.uniform(base, previous * 3))
        return sleep, sleep
    v = np.minimum(cap, base * np.exp2(np.minimum(n, _MAX_EXPONENT)))
    if policy == "exponential":
        return v, previous
    if policy == "full":
        return rng.uniform(0.0, v), previous
    if policy == "equal":
        return v / 2 + rng.uniform(0.0, v / 2), previous
    raise ValueError(f"unknown policy {policy!r}")


def delay_bounds(policy: Policy, n: int, previous: float, base: float, cap: float) -> tuple[float, float]:
    """The closed interval every sleep of ``policy`` after ``n`` failures falls in (for tests and docs)."""
    if policy == "none":
        return 0.0, 0.0
    if policy == "fixed":
        return base, base
    if policy == "decorrelated":
        return min(cap, base), min(cap, max(base, previous * 3))
    v = exponential_ceiling(n, base, cap)
    if policy == "exponential":
        return v, v
    if policy == "full":
        return 0.0, v
    return v / 2, v
