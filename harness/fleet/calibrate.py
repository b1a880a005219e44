"""From a real load run to the fleet model and back: the calibration a storm run measures, and the model's
prediction of a storm scored against the real one (issue #9: calibrate at one fleet size, predict another).

A calibration needs a storm that saturated the core (far more devices than it accepts per second, a short
backoff base); it states:

* ``handshake_ms``: the ramp's connect times (devices starting at a known rate, before the storm), as
  samples - the service time a device sees from an unloaded core, so ramp slowly (``--connect-rate``)
  when the run is meant to calibrate;
* ``accept_rate_per_s``: the storm's reconnect rate from the core's return until 95 % of the fleet was back;
* ``outage_s``: how long the core's restart (or rotation) took, the time it refused connections;
* ``connect_timeout_ms``: the devices' connect timeout.

Whatever the generator itself costs (its TLS work shares the machine with the core) is part of what is
measured, so a calibration is valid for the generator and machine it was measured with.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from harness.fleet.ledger import Ledger, LedgerSummary
from harness.fleet.plan import FleetConfig
from harness.sim.calibration import Calibration, HandshakeMs
from harness.sim.validate import MeasuredStorm, compare, predict_fleet_storm

#: At most this many handshake samples go into a calibration file (evenly spaced over the ramp).
MAX_SAMPLES = 2000
#: Seeds of the model per prediction: the spread a single real storm should fall in.
SEEDS = (1, 2, 3)


def storm_calibration(
    ledger: Ledger, summary: LedgerSummary, config: FleetConfig, *, profile: str, source: str
) -> tuple[Calibration | None, str]:
    """The calibration a storm run measured, or None and why not (no storm, too few devices back)."""
    st = summary.storm
    if st is None:
        return None, "no storm in this run (calibration needs --storm)"
    rate = st.saturated_rate()
    if rate is None:
        return None, f"only {st.reconnected} of {st.devices} devices reconnected: no sustained accept rate"
    samples = ledger.connect_samples_ms(before_ns=st.started_ns)
    if not samples:
        return None, "no connect completed before the storm"
    if len(samples) > MAX_SAMPLES:
        step = len(samples) / MAX_SAMPLES
        samples = [samples[int(i * step)] for i in range(MAX_SAMPLES)]
    calibration = Calibration(
        handshake_ms=HandshakeMs(samples=[round(max(s, 0.001), 3) for s in samples]),
        accept_rate_per_s=round(rate, 1),
        connect_timeout_ms=config.connect_timeout_s * 1000,
        outage_s=st.op_s,
        devices=st.devices,
        profile=profile,
        source=source,
        measured_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        storm=st.kind,
        backoff=str(config.backoff),
        peak_connect_rate_s=st.peak_connect_rate_s,
    )
    return calibration, ""


@dataclass(frozen=True)
class StormValidation:
    """A real storm next to the model's predictions of it (one per seed) from a calibration."""

    devices: int
    measured_t95_s: float | None
    predicted_t95_s: list[float | None]
    error: float | None
    calibration_devices: int | None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "devices": self.devices,
            "measured_t95_s": self.measured_t95_s,
            "predicted_t95_s": self.predicted_t95_s,
            "error_pct": None if self.error is None else round(100 * self.error, 1),
            "calibration_devices": self.calibration_devices,
            "note": self.note,
        }


def validate_storm(calibration: Calibration, summary: LedgerSummary, config: FleetConfig) -> StormValidation:
    """Predict this run's storm from ``calibration`` (the run's fleet size, backoff and outage length, the
    calibration's core) and compare the time to 95 % reconnected:
    error = (mean prediction - measured) / measured."""
    st = summary.storm
    if st is None:
        raise ValueError("the run had no storm to compare with")
    measured = MeasuredStorm.from_times(st.devices, st.reconnect_times_s)
    b = config.backoff
    # The outage is the disruption's length, an input of the scenario like the fleet size (stopping a broker
    # with more connections takes longer), so the model gets this run's, not the calibration run's.
    predictions = predict_fleet_storm(
        calibration, st.devices, (b.name, b.base_s, b.cap_s), SEEDS, outage_s=st.op_s
    )
    t95s = [p.t95_s for p in predictions]
    known = [t for t in t95s if t is not None]
    error: float | None = None
    note = ""
    if measured.t95_s is None:
        note = "the real storm never reached 95 % reconnected"
    elif len(known) < len(t95s):
        note = "the model never reached 95 % reconnected"
    else:
        error = compare(_Mean(sum(known) / len(known)), measured)
    return StormValidation(
        devices=st.devices,
        measured_t95_s=measured.t95_s,
        predicted_t95_s=[None if t is None else round(t, 3) for t in t95s],
        error=error,
        calibration_devices=calibration.devices,
        note=note,
    )


@dataclass(frozen=True)
class _Mean:
    t95_s: float | None
