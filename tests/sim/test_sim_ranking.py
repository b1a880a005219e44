"""The published ranking of backoff policies ("Exponential Backoff And Jitter", AWS Architecture Blog) emerges
from the model: nothing here or in the engine knows which policy should win.

The blog's result: un-jittered exponential is the clear loser (most work and most time); full jitter does the
least work; equal jitter does a little more work than full jitter and takes much longer; decorrelated jitter
does a little more work than full jitter but finishes sooner.

The scenario reproduces the blog's regime with a TLS core instead of an OCC database:

* contention: 5,000 devices lose their connection at once (certificate rotation) against a core that
  completes ~390 handshakes/s (8 slots, lognormal 20/30 ms), so the storm needs ~13 s of pure capacity;
* base backoff small against that (50 ms) and cap about one storm long (12.8 s), as the blog's 5 ms and 2 s
  against its clients' contention;
* client connect timeout 1 s, and a bounded accept backlog of 200 (less than a timeout's worth of work): like
  the OCC server, whose first writer always wins, the core keeps doing useful work however hard the clients
  retry. Without the bound a FIFO queue with timeouts collapses under overload (see the engine tests), and
  then the jittered policies order differently - un-jittered exponential is still the slowest.
"""

from __future__ import annotations

import pytest

from harness.sim import SimConfig, SimMetrics, sweep

SCENARIO = dict(
    devices=5000, event="rotation", outage_s=0, concurrency=8, connect_timeout_s=1.0, backlog=200,
    base_s=0.05, cap_s=12.8, horizon_s=1800,
)  # fmt: skip
POLICIES = ("exponential", "full", "equal", "decorrelated")


@pytest.fixture(scope="module", params=[1, 2], ids=lambda s: f"seed{s}")
def storm(request: pytest.FixtureRequest) -> dict[str, SimMetrics]:
    configs = [SimConfig(policy=p, seed=request.param, **SCENARIO) for p in POLICIES]  # type: ignore[arg-type]
    return {m.policy: m for m in sweep(configs, max_workers=2)}


def _t95(m: SimMetrics) -> float:
    assert m.t95_s is not None, f"{m.policy} never reached 95 %"
    return m.t95_s


def test_unjittered_exponential_is_worst_in_time_and_work(storm: dict[str, SimMetrics]) -> None:
    expo = storm["exponential"]
    for p in ("full", "equal", "decorrelated"):
        assert _t95(expo) > 3 * _t95(storm[p]), p
        assert expo.attempts_total > storm[p].attempts_total, p


def test_full_jitter_does_the_least_work(storm: dict[str, SimMetrics]) -> None:
    full = storm["full"].attempts_total
    assert all(full < storm[p].attempts_total for p in ("exponential", "equal", "decorrelated"))


def test_decorrelated_is_the_fastest_jittered_policy(storm: dict[str, SimMetrics]) -> None:
    deco = storm["decorrelated"]
    for p in ("full", "equal"):
        other = storm[p]
        assert _t95(deco) < _t95(other), p
        assert deco.t99_s is not None and other.t99_s is not None
        assert deco.t99_s < other.t99_s, p


def test_equal_jitter_loses_among_the_jittered(storm: dict[str, SimMetrics]) -> None:
    equal = storm["equal"]
    assert equal.attempts_total > storm["full"].attempts_total
    assert _t95(equal) > max(_t95(storm["full"]), _t95(storm["decorrelated"]))


def test_without_a_backlog_bound_unjittered_exponential_is_still_the_slowest() -> None:
    configs = [
        SimConfig(policy=p, **{**SCENARIO, "backlog": None, "connect_timeout_s": 2.0, "cap_s": 30})  # type: ignore[arg-type]
        for p in POLICIES
    ]
    results = {m.policy: m for m in sweep(configs, max_workers=2)}
    slowest = max(results.values(), key=_t95)
    assert slowest.policy == "exponential"
