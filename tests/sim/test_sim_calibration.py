"""Calibration files: the format loads, every problem names the file and the field; predict and compare."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.errors import InputError
from harness.records import Measurement
from harness.sim.calibration import Calibration, load_calibration, save_calibration
from harness.sim.validate import MeasuredStorm, calibrated_config, compare, predict

GOOD: dict[str, Any] = {
    "format": "gg-harness-calibration",
    "version": 1,
    "handshake_ms": {"median": 18.0, "p95": 30.0},
    "accept_rate_per_s": 400.0,
    "profile": "qemu-aarch64",
    "note from the writer": "kept",
}


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "cal.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_a_good_file_loads_and_implies_a_core(tmp_path: Path) -> None:
    cal = load_calibration(_write(tmp_path, GOOD))
    st = cal.service_time()
    assert (st.median_s, st.p95_s) == (0.018, 0.030)
    # Little's law: the fewest slots that reach 400/s at the mean service time; the rate limit trims the rest.
    assert cal.model_concurrency() == 8
    cfg = calibrated_config(cal, 1000, "full")
    assert cfg.rate_limit_per_s == 400.0 and cfg.capacity_per_s == pytest.approx(400.0)


def test_samples_and_the_p50_spelling_are_accepted(tmp_path: Path) -> None:
    cal = load_calibration(_write(tmp_path, {**GOOD, "handshake_ms": {"samples": [10, 20, 30, 40]}}))
    assert cal.service_time().samples_s == (0.01, 0.02, 0.03, 0.04)
    cal = load_calibration(_write(tmp_path, {**GOOD, "handshake_ms": {"p50": 18, "p95": 30}}))
    assert cal.handshake_ms.median == 18


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    cal = Calibration.model_validate({**GOOD, "concurrency": 4, "connect_timeout_ms": 3000})
    save_calibration(cal, tmp_path / "out.json")
    again = load_calibration(tmp_path / "out.json")
    assert again.model_concurrency() == 4 and again.connect_timeout_ms == 3000
    assert calibrated_config(again, 10, "none").connect_timeout_s == 3.0


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({k: v for k, v in GOOD.items() if k != "accept_rate_per_s"}, r"accept_rate_per_s: Field required"),
        ({**GOOD, "accept_rate_per_s": 0}, r"accept_rate_per_s: Input should be greater than 0"),
        ({**GOOD, "accept_rate_per_s": "fast"}, r"accept_rate_per_s: Input should be a valid number"),
        ({k: v for k, v in GOOD.items() if k != "handshake_ms"}, r"handshake_ms: Field required"),
        (
            {**GOOD, "handshake_ms": {"median": 18}},
            r"handshake_ms: needs both median and p95.*p95 is missing",
        ),
        ({**GOOD, "handshake_ms": {"median": 30, "p95": 18}}, r"handshake_ms: p95 \(18 ms\) is below"),
        ({**GOOD, "handshake_ms": {"median": -1, "p95": 3}}, r"handshake_ms.median: Input should be greater"),
        ({**GOOD, "handshake_ms": {"median": 1, "p95": 3, "p90": 2}}, r"handshake_ms.p90: Extra inputs"),
        ({**GOOD, "handshake_ms": {"samples": []}}, r"handshake_ms.samples: List should have at least 1"),
        ({**GOOD, "handshake_ms": {"samples": [5, 0]}}, r"handshake_ms: samples: every sample must be"),
        ({**GOOD, "version": 2}, r"version: Input should be 1"),
        ({**GOOD, "format": "something-else"}, r"format: Input should be 'gg-harness-calibration'"),
        ({**GOOD, "concurrency": 0}, r"concurrency: Input should be greater than or equal to 1"),
        ([1, 2], r"\(top level\): expected a JSON object, got list"),
        ("{not json", r"not valid JSON: .* at line 1 column 2"),
    ],
)
def test_problems_name_the_file_and_the_field(tmp_path: Path, data: object, expected: str) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(InputError, match=expected) as info:
        load_calibration(path)
    assert str(info.value).startswith(f"{path}: ")


def test_a_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cal.json: cannot read calibration"):
        load_calibration(tmp_path / "cal.json")


def test_predict_then_compare_against_a_measured_storm() -> None:
    cal = Calibration.model_validate(GOOD)
    kw = dict(event="rotation", outage_s=0, base_s=0.2, cap_s=20, connect_timeout_s=2.0, backlog=300)
    predicted = predict(cal, 3000, "full", **kw)  # type: ignore[arg-type]
    assert predicted.t95_s is not None
    # A "real" storm stand-in: the same model with another seed (the fleet engine will supply real ones).
    other = predict(cal, 3000, "full", seed=99, **kw)  # type: ignore[arg-type]
    assert other.t95_s is not None
    measured = MeasuredStorm.from_times(3000, [other.t95_s] * 2900 + [other.t95_s + 1] * 100)
    assert measured.t95_s == other.t95_s
    error = compare(predicted, measured)
    assert error == pytest.approx((predicted.t95_s - other.t95_s) / other.t95_s)
    assert abs(error) < 0.15


def test_measured_storm_from_fleet_measurement_records() -> None:
    records = [
        Measurement("CONNECT", "reconnect", 12.0, context={"device": "d1", "end_s": 103.0}),
        Measurement("CONNECT", "reconnect", 9.0, context={"device": "d1", "end_s": 101.5}),  # earlier wins
        Measurement(
            "CONNECT", "reconnect", 5000.0, exception="timeout", context={"device": "d2", "end_s": 0}
        ),
        Measurement("CONNECT", "reconnect", 7.0, context={"device": "d2", "end_s": 104.0}),
        Measurement("PUBLISH", "telemetry", 1.0, context={"device": "d3", "end_s": 100.5}),
    ]
    storm = MeasuredStorm.from_measurements(2, records, disruption_at_s=100.0)
    assert storm.reconnect_times_s == (1.5, 4.0)
    assert storm.t50_s == 1.5 and storm.t95_s == 4.0
    with pytest.raises(ValueError, match="context needs 'device' and 'end_s'"):
        MeasuredStorm.from_measurements(1, [Measurement("CONNECT", "reconnect", 1.0)], 0.0)


def test_compare_refuses_a_storm_that_never_reached_95_percent() -> None:
    half = MeasuredStorm.from_times(10, [1.0] * 5)
    assert half.t50_s == 1.0 and half.t95_s is None
    with pytest.raises(ValueError, match="measured storm never reached 95 %"):
        compare(MeasuredStorm.from_times(10, [1.0] * 10), half)
