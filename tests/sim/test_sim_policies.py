"""Backoff policies: the blog's formulas, the same bounds in the scalar and the vectorised form."""

from __future__ import annotations

import random

import numpy as np
import pytest

from harness.sim.config import POLICIES, Policy
from harness.sim.policies import backoff_delay, backoff_delays, delay_bounds, exponential_ceiling

BASE, CAP = 0.1, 5.0


def test_exponential_ceiling_doubles_from_two_bases_and_stops_at_the_cap() -> None:
    # n = failures so far, as in the blog's published simulator: the first retry's ceiling is 2 x base.
    assert [exponential_ceiling(n, BASE, CAP) for n in (1, 2, 3)] == pytest.approx([0.2, 0.4, 0.8])
    assert exponential_ceiling(6, BASE, CAP) == CAP
    assert exponential_ceiling(10_000, BASE, CAP) == CAP  # no overflow for huge n


@pytest.mark.parametrize("policy", POLICIES)
def test_scalar_delays_stay_within_the_policy_bounds(policy: Policy) -> None:
    rng = random.Random(7)
    previous = BASE
    for n in range(1, 40):
        lo, hi = delay_bounds(policy, n, previous, BASE, CAP)
        delay, nxt = backoff_delay(policy, n, previous, BASE, CAP, rng)
        assert lo - 1e-12 <= delay <= hi + 1e-12, (n, previous, delay)
        assert delay <= CAP
        previous = nxt


@pytest.mark.parametrize("policy", POLICIES)
def test_vector_delays_stay_within_the_same_bounds(policy: Policy) -> None:
    rng = np.random.default_rng(7)
    n = np.arange(1, 41, dtype=np.int64).repeat(50)
    previous = rng.uniform(BASE, CAP, size=n.size)
    delays, nxt = backoff_delays(policy, n, previous, BASE, CAP, rng)
    for i in range(n.size):
        lo, hi = delay_bounds(policy, int(n[i]), float(previous[i]), BASE, CAP)
        assert lo - 1e-12 <= delays[i] <= hi + 1e-12
    if policy == "decorrelated":
        assert np.array_equal(nxt, delays)  # its state is the sleep it just drew
    else:
        assert np.array_equal(nxt, previous)


def test_jittered_policies_spread_as_the_blog_says() -> None:
    """Full jitter averages half the ceiling, equal jitter three quarters; both reach the whole range."""
    rng = np.random.default_rng(3)
    n = np.full(200_000, 4)
    v = exponential_ceiling(4, BASE, CAP)
    full, _ = backoff_delays("full", n, np.full(n.size, BASE), BASE, CAP, rng)
    equal, _ = backoff_delays("equal", n, np.full(n.size, BASE), BASE, CAP, rng)
    assert full.mean() == pytest.approx(v / 2, rel=0.01)
    assert equal.mean() == pytest.approx(0.75 * v, rel=0.01)
    assert full.min() < 0.01 * v and equal.min() >= v / 2 and equal.max() > 0.99 * v


def test_decorrelated_draws_between_base_and_three_times_the_last_sleep() -> None:
    rng = np.random.default_rng(5)
    previous = np.full(100_000, 1.0)
    sleep, _ = backoff_delays(
        "decorrelated", np.ones(previous.size, dtype=np.int64), previous, BASE, CAP, rng
    )
    assert sleep.min() >= BASE and sleep.max() <= 3.0
    assert sleep.mean() == pytest.approx((BASE + 3.0) / 2, rel=0.01)


def test_none_and_fixed_ignore_the_attempt_count() -> None:
    rng = random.Random(1)
    assert backoff_delay("none", 9, BASE, BASE, CAP, rng)[0] == 0.0
    assert backoff_delay("fixed", 9, BASE, BASE, CAP, rng)[0] == BASE
