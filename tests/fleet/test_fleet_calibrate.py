"""The bridge from real load runs to the fleet model (issue #9), and the ledger's plot data: pure functions
on synthetic records, no core needed."""

from __future__ import annotations

import json
import math
import random

import pytest

from harness.fleet.backoff import POLICIES, BackoffPolicy
from harness.fleet.calibrate import (
    RecordedStorm,
    fit_calibration,
    predict_recorded,
    storm_calibration,
    validate_storm,
)
from harness.fleet.ledger import FLEET, Ledger, StormSummary, latency_histogram
from harness.fleet.plan import FleetConfig
from harness.records import Measurement
from harness.sim.calibration import Calibration, HandshakeMs, load_calibration, save_calibration
from harness.sim.cohort import _CohortFleet
from harness.sim.policies import delay_bounds
from harness.sim.validate import calibrated_config, fleet_policy

T0 = 1_800_000_000 * 10**9  # a Unix time in ns


def _connect(device: str, t_s: float, ms: float = 8.0, error: str | None = None) -> Measurement:
    ctx = {"device": device, "engine": "asyncio", "attempt": 1, "t_ns": T0 + int(t_s * 1e9)}
    return Measurement("MQTT", "connect", ms, 0, error, ctx)


def _storm_ledger(devices: int, rate: float, outage_s: float, ramp_ms: float = 8.0) -> Ledger:
    """A fleet ramped up before t = 10 s; a restart at t = 10 s lasting ``outage_s``; the core then takes
    back ``rate`` devices per second."""
    names = [f"dev-{i:05d}" for i in range(devices)]
    ledger = Ledger(names)
    for i, name in enumerate(names):
        ledger.add(_connect(name, i * 0.001, ramp_ms))
    storm_ns = T0 + 10 * 10**9
    ledger.add(
        Measurement(FLEET, "storm:restart", outage_s * 1000, 0, None, {"t_ns": storm_ns, "devices": devices})
    )
    for i, name in enumerate(names):
        ledger.add(_connect(name, 10 + outage_s + (i + 1) / rate, 900.0))
    return ledger


def test_saturated_rate_is_the_reconnect_rate_after_the_outage() -> None:
    s = _storm_ledger(1000, rate=250.0, outage_s=0.5).summary()
    assert s.storm is not None and s.storm.reconnected == 1000
    rate = s.storm.saturated_rate()
    assert rate == pytest.approx(250.0, rel=0.01)
    assert StormSummary("restart", 0, 1.0, devices=5).saturated_rate() is None  # too few to say


def test_storm_calibration_takes_ramp_handshakes_rate_and_outage(tmp_path: pytest.TempPathFactory) -> None:
    ledger = _storm_ledger(400, rate=200.0, outage_s=0.3, ramp_ms=7.5)
    s = ledger.summary()
    cfg = FleetConfig(devices=400, storm="restart", backoff=BackoffPolicy("full-jitter", 0.5, 10))
    cal, why = storm_calibration(ledger, s, cfg, profile="native-x86_64", source="test")
    assert cal is not None, why
    assert cal.accept_rate_per_s == pytest.approx(200.0, rel=0.01)
    assert cal.outage_s == pytest.approx(0.3)
    assert cal.service_time().median_s == pytest.approx(0.0075)  # the ramp's, not the storm's 900 ms
    assert cal.connect_timeout_ms == cfg.connect_timeout_s * 1000 and cal.devices == 400
    path = tmp_path / "calibration.json"  # type: ignore[operator]
    save_calibration(cal, path)
    assert load_calibration(path).accept_rate_per_s == cal.accept_rate_per_s


def test_no_calibration_without_a_storm() -> None:
    ledger = Ledger(["a"])
    ledger.add(_connect("a", 0.0))
    cal, why = storm_calibration(ledger, ledger.summary(), FleetConfig(devices=1), profile="p", source="t")
    assert cal is None and "--storm" in why


def test_the_model_predicts_a_storm_it_matches() -> None:
    """A capacity-bound synthetic storm is predicted from its own calibration within a few per cent; a
    calibration claiming twice the capacity is caught as a large error (the comparison can fail)."""
    cfg = FleetConfig(devices=3000, storm="restart", backoff=BackoffPolicy("full-jitter", 0.5, 10))
    ledger = _storm_ledger(3000, rate=300.0, outage_s=1.0)
    s = ledger.summary()
    cal, _ = storm_calibration(ledger, s, cfg, profile="p", source="t")
    assert cal is not None
    v = validate_storm(cal, s, cfg)
    assert v.error is not None and abs(v.error) < 0.05, v
    wrong = cal.model_copy(update={"accept_rate_per_s": 600.0})
    w = validate_storm(wrong, s, cfg)
    assert w.error is not None and w.error < -0.3, w
    assert w.to_json()["error_pct"] == pytest.approx(100 * w.error, abs=0.1)


@pytest.mark.parametrize("name", POLICIES)
def test_fleet_backoff_maps_to_the_same_model_policy(name: str) -> None:
    """After k failures the fleet's delays fall in exactly the model's bounds for k failures."""
    base, cap = 0.5, 8.0
    policy, m_base, m_cap = fleet_policy(name, base, cap)
    for seed in range(20):
        b = BackoffPolicy(name, base, cap).start(seed)  # type: ignore[arg-type]
        previous = m_base
        for k in range(1, 8):
            delay = b.next_delay()
            lo, hi = delay_bounds(policy, k, previous, m_base, m_cap)
            assert lo - 1e-9 <= delay <= hi + 1e-9, (name, k, delay, lo, hi)
            previous = delay if policy == "decorrelated" else previous


def test_latency_histogram_bins_by_powers_of_two() -> None:
    hist = latency_histogram([0.1, 0.3, 0.9, 1.0, 3.0, 100.0])
    assert hist[0] == (0.25, 1) and (0.5, 1) in hist and (1.0, 2) in hist and (4.0, 1) in hist
    assert hist[-1] == (128.0, 1) and sum(n for _, n in hist) == 6
    assert latency_histogram([]) == []


def test_series_counts_connections_and_messages_per_second() -> None:
    ledger = Ledger(["a", "b"])
    ledger.add(_connect("a", 0.2))
    ledger.add(_connect("b", 1.5))
    rng = random.Random(1)
    for seq in range(10):
        sent = T0 + int((2 + seq * 0.1) * 1e9)
        ctx = {"device": "a", "seq": seq, "sent_ns": sent, "qos": 0, "topic": "relay/a"}
        ledger.add(Measurement("MQTT", "publish", 0.1, 64, None, ctx))
        rx = {"device": "b", "from": "a", "seq": seq, "sent_ns": sent, "qos": 0, "topic": "relay/a"}
        ledger.add(Measurement("MQTT", "receive", rng.uniform(1, 3), 64, None, rx))
    ledger.add(Measurement("MQTT", "disconnect", 0, 0, "lost", {"device": "a", "t_ns": T0 + 3_500_000_000}))
    s = ledger.summary().series
    assert s["t_s"] == [0.0, 1.0, 2.0, 3.0]
    assert s["connected"] == [1.0, 2.0, 2.0, 1.0]
    assert sum(s["published_msg_s"]) == 10 and sum(s["received_msg_s"]) == 10
    assert all(math.isfinite(v) for v in s["received_msg_s"])


def test_calibrated_outage_is_the_default_and_overrides_win() -> None:
    from harness.sim.calibration import parse_calibration
    from harness.sim.validate import calibrated_config

    cal = parse_calibration(
        {"handshake_ms": {"median": 5, "p95": 9}, "accept_rate_per_s": 200, "outage_s": 0.4}, "cal.json"
    )
    assert calibrated_config(cal, 100, "full").outage_s == 0.4
    assert calibrated_config(cal, 100, "full", outage_s=3.0).outage_s == 3.0
    with pytest.raises(ValueError, match="allowed: none, fixed"):
        fleet_policy("sometimes", 1.0, 2.0)


def test_memory_drift_is_the_slope_of_the_second_half() -> None:
    from harness.fleet.memory import drift_mb_per_h, rss_mb_from_status

    t = [60.0 * i for i in range(40)]  # a sample a minute for 40 minutes
    growing = [100.0 + (50.0 if i < 20 else 0.0) + i * 0.6 for i in range(40)]  # warm-up, then 0.6 MB/min
    assert drift_mb_per_h(t, growing) == pytest.approx(36.0, rel=1e-6)
    assert drift_mb_per_h(t[:6], growing[:6]) is None  # too few samples
    assert drift_mb_per_h([i / 10 for i in range(100)], [float(i) for i in range(100)]) is None  # 10 s
    gaps: list[float | None] = [None if i % 3 == 0 else 80.0 for i in range(40)]
    assert drift_mb_per_h(t, gaps) == pytest.approx(0.0)
    assert rss_mb_from_status("Name:\tmosquitto\nVmRSS:\t   2048 kB\n") == 2.0
    assert rss_mb_from_status("Name:\tzombie\n") is None


def test_memory_check_fails_on_drift_and_on_too_few_samples() -> None:
    from harness.fleet.load import memory_check

    block = {"t_s": [0.0, 1.0], "interval_s": 1.0, "core_drift_mb_per_h": 12.5, "generator_drift_mb_per_h": 1}
    bad = memory_check(block, 10.0)
    assert not bad.ok and "+12.5 MB/h" in bad.message and bad.id == "load.max_memory_drift"
    assert memory_check(block, 20.0).ok
    short = memory_check({**block, "core_drift_mb_per_h": None}, 10.0)
    assert not short.ok and "run longer" in short.message


def _model_storm(rate: float, devices: int, outage_s: float) -> RecordedStorm:
    """A storm the model itself produced with a known accept rate (seed 7, not one of the fit's seeds)."""
    samples = tuple(6.0 + 0.01 * i for i in range(200))
    cal = Calibration(
        handshake_ms=HandshakeMs(samples=list(samples)), accept_rate_per_s=rate, connect_timeout_ms=120_000
    )
    policy, base, cap = fleet_policy("full-jitter", 0.5, 10.0)
    cfg = calibrated_config(
        cal, devices, policy, event="rotation", base_s=base, cap_s=cap, keepalive_s=30.0, outage_s=outage_s,
        seed=7,
    )  # fmt: skip
    fleet = _CohortFleet(cfg)
    fleet.run()
    return RecordedStorm(
        devices=devices,
        op_s=outage_s,
        reconnect_times_s=tuple(sorted(fleet.connected_at.tolist())),
        handshake_samples_ms=samples,
        connect_timeout_s=120.0,
        backoff="full-jitter:0.5:10",
    )


def test_fitting_through_the_model_recovers_the_rate_of_a_storm_it_made() -> None:
    storm = _model_storm(150.0, 1000, 1.5)
    fitted = fit_calibration(storm, listen_queue=False)
    assert fitted.accept_rate_per_s == pytest.approx(150, rel=0.05)
    assert fitted.backlog is None and fitted.accept_interval_ms is None
    assert fitted.model_extra is not None and fitted.model_extra["rate_limited_storm"] is True
    # ... and predicts a storm five times as large from it.
    big = _model_storm(150.0, 5000, 1.5)
    v = predict_recorded(fitted, big)
    assert v.error is not None and abs(v.error) < 0.05


def test_a_storm_the_backoff_set_is_flagged_as_saying_nothing_about_the_rate() -> None:
    storm = _model_storm(3000.0, 1000, 1.5)  # the core takes 1,000 devices in 0.3 s; the retries take longer
    fitted = fit_calibration(storm, listen_queue=False)
    assert fitted.model_extra is not None and fitted.model_extra["rate_limited_storm"] is False


def test_a_recorded_storm_round_trips_through_json() -> None:
    storm = _model_storm(300.0, 200, 0.5)
    again = RecordedStorm.from_json(json.loads(json.dumps(storm.to_json())))
    assert again == storm and again.t95_s == storm.t95_s


def test_a_storm_that_never_got_back_cannot_be_fitted() -> None:
    storm = RecordedStorm(
        devices=100, op_s=1.0, reconnect_times_s=(2.0,), handshake_samples_ms=(5.0,), connect_timeout_s=10.0,
        backoff="full-jitter:0.5:10",
    )  # fmt: skip
    with pytest.raises(ValueError, match="never reached 95 %"):
        fit_calibration(storm)
