"""The cohort engine against the simpy reference model, and the model's own semantics.

The cohort engine claims to compute the same model as the one-process-per-device reference, only faster; the
agreement tests hold it to a few percent on 10^4 devices (the residue is sampling noise: the engines draw
their random numbers in different orders).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from harness.errors import InputError
from harness.sim import ServiceTime, SimConfig, simulate, sweep
from harness.sim.disruption import detection_times
from harness.sim.server import TokenBucket

AGREEMENT: dict[str, dict[str, Any]] = {
    # Outage noticed through keep-alive, attempts against a silent core, full jitter.
    "outage-full": dict(
        policy="full", event="outage", outage_s=20, keepalive_s=30, concurrency=16, base_s=0.5, cap_s=30,
        connect_timeout_s=2.0,
    ),
    # Rotation with a restart window (refused attempts), a connect-rate limit, un-jittered exponential.
    "rotation-exponential-ratelimit": dict(
        policy="exponential", event="rotation", outage_s=2, concurrency=16, rate_limit_per_s=600,
        base_s=0.5, cap_s=10, connect_timeout_s=2.0,
    ),
    # Everyone at once against a bounded accept backlog, decorrelated jitter.
    "rotation-decorrelated-backlog": dict(
        policy="decorrelated", event="rotation", outage_s=0, concurrency=8, backlog=300, base_s=0.05,
        cap_s=25, connect_timeout_s=1.0,
    ),
}  # fmt: skip


def _rel(a: float | None, b: float | None) -> float:
    assert a is not None and b is not None, "both engines must reach the fraction"
    return abs(a - b) / b


@pytest.mark.parametrize("name", list(AGREEMENT))
def test_cohort_engine_agrees_with_the_simpy_reference_on_10k_devices(name: str) -> None:
    cfg = SimConfig(devices=10_000, seed=11, **AGREEMENT[name])
    fast, ref = simulate(cfg, "cohort"), simulate(cfg, "naive")
    assert ref.engine == "naive" and fast.engine == "cohort"
    for field in ("t50_s", "t95_s", "t99_s"):
        assert _rel(getattr(fast, field), getattr(ref, field)) < 0.03, field
    assert _rel(fast.attempts_mean, ref.attempts_mean) < 0.03
    assert _rel(fast.handshakes, ref.handshakes) < 0.03
    assert _rel(fast.peak_connect_rate_per_s, ref.peak_connect_rate_per_s) < 0.05
    assert fast.reconnected == ref.reconnected == cfg.devices
    assert fast.down_failures == pytest.approx(ref.down_failures, rel=0.03, abs=5)


def test_same_seed_same_result_and_another_seed_another() -> None:
    cfg = SimConfig(devices=3000, policy="full", event="rotation", outage_s=0, concurrency=4, base_s=0.2)
    a, b = simulate(cfg), simulate(cfg)
    assert (a.t95_s, a.attempts_total, a.handshakes) == (b.t95_s, b.attempts_total, b.handshakes)
    assert np.array_equal(a.series.queue, b.series.queue)
    c = simulate(SimConfig(**{**_fields(cfg), "seed": 2}))
    assert c.attempts_total != a.attempts_total


def test_a_silent_outage_is_noticed_within_one_and_a_half_keepalives() -> None:
    k = 40.0
    phase = np.linspace(0, 1, 10_001, endpoint=False)
    long_outage = detection_times(SimConfig(devices=1, outage_s=1000, keepalive_s=k), phase)
    assert long_outage.min() >= 0.5 * k and long_outage.max() < 1.5 * k
    short = detection_times(SimConfig(devices=1, outage_s=10, keepalive_s=k), phase)
    back = phase * k >= 10  # pinging a core that is back: reset at once
    assert np.array_equal(short[back], phase[back] * k)
    assert (short[~back] == phase[~back] * k + 0.5 * k).all()
    assert (detection_times(SimConfig(devices=1, event="rotation"), phase) == 0).all()


def test_with_ample_capacity_everyone_is_back_within_the_detection_window() -> None:
    cfg = SimConfig(devices=20_000, policy="none", outage_s=5, keepalive_s=20, concurrency=512)
    m = simulate(cfg)
    assert m.reconnected == cfg.devices and m.t100_s is not None
    assert m.t100_s < 1.5 * cfg.keepalive_s + 0.1
    assert m.attempts_max == 1 and m.timeouts == 0 and m.wasted_handshakes == 0


def test_rate_limit_caps_the_connect_rate() -> None:
    cfg = SimConfig(
        devices=5000, policy="full", event="rotation", outage_s=0, concurrency=64, rate_limit_per_s=200,
        rate_burst=1, connect_timeout_s=30, base_s=1, cap_s=60,
    )  # fmt: skip
    for engine in ("cohort", "naive"):
        m = simulate(cfg, engine)  # type: ignore[arg-type]
        assert m.peak_connect_rate_per_s <= 200 * 1.02, engine
        assert m.t100_s is not None and m.t100_s >= cfg.devices / 200 - 1


def test_a_bounded_backlog_turns_a_metastable_storm_into_one_that_drains() -> None:
    """Unbounded FIFO + client timeouts: in overload the core only starts attempts whose clients are about to
    give up, so almost every handshake is wasted and the storm never ends. Bounding the queue (admission
    control) keeps the waits below the timeout and the core's work useful."""
    common = dict(
        devices=10_000, policy="full", event="rotation", outage_s=0, concurrency=8, base_s=0.5, cap_s=10,
        connect_timeout_s=2.0, horizon_s=600,
    )  # fmt: skip
    collapsed = simulate(SimConfig(**common))  # type: ignore[arg-type]
    drained = simulate(SimConfig(**common, backlog=200))  # type: ignore[arg-type]
    assert collapsed.t95_s is None and collapsed.wasted_handshakes > 0.9 * collapsed.handshakes
    assert drained.t99_s is not None and drained.wasted_handshakes == 0


def test_sweep_in_processes_matches_serial_runs() -> None:
    configs = [
        SimConfig(devices=2000, policy=p, event="rotation", outage_s=0, concurrency=4, base_s=0.1)
        for p in ("exponential", "full", "decorrelated")
    ]
    parallel = sweep(configs, max_workers=2)
    serial = [simulate(c) for c in configs]
    assert [m.policy for m in parallel] == ["exponential", "full", "decorrelated"]
    for p, s in zip(parallel, serial, strict=True):
        assert (p.t95_s, p.attempts_total) == (s.t95_s, s.attempts_total)


def test_metrics_serialise_to_json_values() -> None:
    m = simulate(SimConfig(devices=500, policy="equal", event="rotation", outage_s=0, concurrency=2))
    doc = m.to_json(series_points=50)
    assert doc["policy"] == "equal" and doc["config"]["devices"] == 500
    assert len(doc["series"]["queue"]) <= 51
    assert max(doc["series"]["queue"]) == m.peak_queue  # downsampling keeps the peak
    assert doc["series"]["reconnected_fraction"][-1] == pytest.approx(1.0)
    assert all(isinstance(v, int | float | str | type(None)) for k, v in doc.items() if k not in _NESTED)


_NESTED = ("config", "series")


def test_token_bucket_paces_after_the_burst() -> None:
    bucket = TokenBucket(rate=10.0, burst=3.0)
    starts = []
    for _ in range(6):
        s = bucket.start_time(0.0)
        bucket.take(s)
        starts.append(s)
    assert starts == pytest.approx([0, 0, 0, 0.1, 0.2, 0.3])
    assert bucket.start_time(10.0) == 10.0  # refilled, capped at the burst


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"devices": 0}, "devices"),
        ({"policy": "random"}, "policy"),
        ({"cap_s": 0.5, "base_s": 1.0}, "cap_s"),
        ({"concurrency": 0}, "concurrency"),
        ({"connect_timeout_s": 0}, "connect_timeout_s"),
        ({"rate_limit_per_s": -1}, "rate_limit_per_s"),
        ({"backlog": -1}, "backlog"),
        ({"event": "flood"}, "event"),
        ({"policy": "exponential", "base_s": 0}, "base_s"),
    ],
)
def test_bad_config_names_the_field(fields: dict[str, Any], name: str) -> None:
    with pytest.raises(InputError, match=f"^{name}"):
        SimConfig(**{"devices": 10, **fields})


def test_bad_service_time_names_the_field() -> None:
    with pytest.raises(InputError, match=r"^handshake p95: must be >= the median"):
        ServiceTime(median_s=0.02, p95_s=0.01)
    with pytest.raises(InputError, match=r"^handshake samples"):
        ServiceTime(samples_s=(0.01, -1.0))


def test_lognormal_service_time_hits_its_median_and_p95() -> None:
    st = ServiceTime(median_s=0.02, p95_s=0.035)
    draws = st.draw(np.random.default_rng(1), 400_000)
    assert np.median(draws) == pytest.approx(0.02, rel=0.01)
    assert np.percentile(draws, 95) == pytest.approx(0.035, rel=0.01)
    assert draws.mean() == pytest.approx(st.mean_s, rel=0.01)
    assert math.isclose(ServiceTime(median_s=0.02, p95_s=0.02).mean_s, 0.02)


def _fields(cfg: SimConfig) -> dict[str, Any]:
    return {f: getattr(cfg, f) for f in cfg.__dataclass_fields__}
