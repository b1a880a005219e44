"""Impairment specs: the --impair spelling, its errors (naming field and allowed values), netem args."""

from __future__ import annotations

import pytest

from harness.errors import InputError
from harness.net.impair import Impairment


def test_full_spec_parses_and_round_trips() -> None:
    spec = Impairment.parse("delay=100ms,jitter=10ms,loss=2%,duplicate=1%,reorder=5%,rate=1mbit")
    assert spec == Impairment(100.0, 10.0, 2.0, 1.0, 5.0, 1000)
    assert str(spec) == "delay=100ms,jitter=10ms,loss=2%,duplicate=1%,reorder=5%,rate=1000kbit"
    assert Impairment.parse(str(spec)) == spec
    assert spec.netem_args() == [
        "limit",
        "10000",
        "delay",
        "100ms",
        "10ms",
        "distribution",
        "normal",
        "loss",
        "2%",
        "duplicate",
        "1%",
        "reorder",
        "5%",
        "rate",
        "1000kbit",
    ]


@pytest.mark.parametrize("text", ["", "none", " none "])
def test_none_is_no_impairment(text: str) -> None:
    assert Impairment.parse(text).is_none


def test_units() -> None:
    assert Impairment.parse("delay=1.5s").delay_ms == 1500
    assert Impairment.parse("delay=500us").delay_ms == 0.5
    assert Impairment.parse("delay=500us").netem_args()[-1] == "500us"
    assert Impairment.parse("rate=512kbit").rate_kbit == 512


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("latency=100ms", "field 'latency': unknown; allowed fields: delay (time), jitter (time)"),
        ("delay=100", "field 'delay': '100' is not a time; write e.g. 100ms"),
        ("loss=2", "field 'loss': '2' is not a percentage"),
        ("loss=150%", "field 'loss': 150% is above 100%"),
        ("rate=fast", "field 'rate': 'fast' is not a rate"),
        ("rate=1kbit", "below the allowed 8kbit"),
        ("delay", "expected FIELD=VALUE"),
        ("delay=1ms,delay=2ms", "field 'delay': given twice"),
        ("jitter=5ms", "field 'jitter': needs a delay"),
        ("reorder=5%", "field 'reorder': needs a delay"),
        ("delay=5ms,jitter=10ms", "exceeds the delay"),
        ("delay=20s", "above the allowed 10s"),
    ],
)
def test_bad_specs_name_field_and_allowed_values(text: str, expected: str) -> None:
    with pytest.raises(InputError) as err:
        Impairment.parse(text, source="--impair")
    assert str(err.value).startswith("--impair: impairment field")
    assert expected in str(err.value)
