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
import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.fleet.ledger import Ledger, LedgerSummary
from harness.fleet.plan import FleetConfig
from harness.sim.calibration import Calibration, HandshakeMs
from harness.sim.metrics import time_to_fraction
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


@dataclass(frozen=True)
class RecordedStorm:
    """One real restart storm as raw data (what ``bench/bench_storm.py`` records per storm): enough to
    calibrate from it or to predict it again after the model changes, without running it again."""

    devices: int
    op_s: float
    reconnect_times_s: tuple[float, ...]
    handshake_samples_ms: tuple[float, ...]
    connect_timeout_s: float
    backoff: str
    attempts: int = 0
    #: The listener's effective backlog (``ss`` Send-Q: the broker's listen() capped at somaxconn).
    backlog: int | None = None
    syn_retries: int | None = None
    #: SYNs the kernel dropped on a full accept queue during the run (machine-wide counter delta).
    listen_overflows: int = 0
    loadavg: float | None = None
    finished_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RecordedStorm:
        data = dict(data)
        data["reconnect_times_s"] = tuple(sorted(data["reconnect_times_s"]))
        data["handshake_samples_ms"] = tuple(data["handshake_samples_ms"])
        return cls(**data)

    @property
    def t95_s(self) -> float | None:
        return time_to_fraction(_array(self.reconnect_times_s), self.devices, 0.95)

    def saturated_rate(self, fraction: float = 0.95) -> float | None:
        """Reconnects per second from the core's return until ``fraction`` were back (as the ledger's)."""
        need = max(1, math.ceil(fraction * self.devices - 1e-9))
        times = self.reconnect_times_s
        if self.devices < 10 or len(times) < need:
            return None
        span = times[need - 1] - self.op_s
        return need / span if span > 0 else None

    def backoff_triple(self) -> tuple[str, float, float]:
        name, base, cap = self.backoff.split(":")
        return name, float(base), float(cap)


def _array(values: tuple[float, ...]) -> Any:
    import numpy as np

    return np.asarray(values, dtype=np.float64)


def _samples(samples_ms: tuple[float, ...]) -> list[float]:
    out = list(samples_ms)
    if len(out) > MAX_SAMPLES:
        step = len(out) / MAX_SAMPLES
        out = [out[int(i * step)] for i in range(MAX_SAMPLES)]
    return [round(max(s, 0.001), 3) for s in out]


def _overrides(storm: RecordedStorm) -> dict[str, Any]:
    """The model inputs a recorded storm fixes: its outage, its listener's backlog, the SYN retries."""
    out: dict[str, Any] = {"outage_s": storm.op_s}
    if storm.syn_retries is not None:
        out["syn_retries"] = storm.syn_retries
    return out


def _model(calibration: Calibration, storm: RecordedStorm) -> tuple[float, float]:
    """The model's mean time to 95 % (inf: never) and mean SYN drops for ``storm`` under ``calibration``."""
    preds = predict_fleet_storm(
        calibration, storm.devices, storm.backoff_triple(), SEEDS, **_overrides(storm)
    )
    t95s = [p.t95_s for p in preds]
    drops = statistics.fmean(p.syn_retransmits + p.rejected for p in preds)
    if any(t is None for t in t95s):
        return math.inf, drops
    return statistics.fmean(t for t in t95s if t is not None), drops


#: Bisection steps of each fit (each halves the bracket in log space: 2^-14 of the bracket's ratio).
FIT_STEPS = 14
#: A calibration storm tells the core's rate when 25 % more rate shortens it by at least this fraction.
IDENTIFIABLE = 0.05
#: Rounds of fitting the accept rate and the accept-sweep interval in turn (they barely interact).
FIT_ROUNDS = 2


def _bisect_log(lo: float, hi: float, too_low: Any) -> float:
    """The point in [lo, hi] where ``too_low`` turns False (log-space bisection)."""
    for _ in range(FIT_STEPS):
        mid = math.sqrt(lo * hi)
        if too_low(mid):
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def fit_calibration(storm: RecordedStorm, *, source: str = "", listen_queue: bool = True) -> Calibration:
    """The calibration a recorded storm implies, with the core's parameters fitted through the model itself.

    The storm's apparent rate (95 % of the fleet over the time from the core's return) includes everything
    that kept the core from its full rate: SYNs dropped on a full listen queue and retransmitted seconds
    later, backoff gaps at the start. The model reproduces those itself (backlog, SYN retries, the fleet's
    backoff), so taking the apparent rate as the core's rate would count them twice and the error would
    grow with the fleet size. Instead two figures are fitted, in turn, by log-space bisection with fixed
    seeds: the accept rate at which the model reaches 95 % when the real storm did, and (when the kernel
    dropped SYNs, ``listen_overflows``) the eager core's accept-sweep interval at which the model drops as
    many SYNs as the kernel did. Handshake samples, backlog, outage and connect timeout are measured.
    ``listen_queue=False`` fits the rate alone, with no listen queue in the model.
    """
    apparent = storm.saturated_rate()
    measured = storm.t95_s
    if apparent is None or measured is None:
        raise ValueError(f"the {storm.devices}-device storm never reached 95 % reconnected: nothing to fit")
    drops = storm.listen_overflows if storm.backlog is not None and listen_queue else 0
    cal = Calibration(
        handshake_ms=HandshakeMs(samples=_samples(storm.handshake_samples_ms)),
        accept_rate_per_s=round(apparent, 1),
        connect_timeout_ms=storm.connect_timeout_s * 1000,
        backlog=storm.backlog if drops > 0 else None,
        syn_retries=storm.syn_retries,
        accept_interval_ms=20.0 if drops > 0 else None,
        outage_s=storm.op_s,
        devices=storm.devices,
        source=source or "a recorded storm",
        measured_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        storm="restart",
        backoff=storm.backoff,
        apparent_rate_per_s=round(apparent, 1),
        measured_t95_s=round(measured, 3),
        measured_syn_drops=storm.listen_overflows,
    )
    for _ in range(FIT_ROUNDS if drops > 0 else 1):
        fixed = cal

        def slow(rate: float, fixed: Calibration = fixed) -> bool:
            return _model(fixed.model_copy(update={"accept_rate_per_s": rate}), storm)[0] > measured

        rate = _bisect_log(apparent / 4, apparent * 4, slow)
        cal = cal.model_copy(update={"accept_rate_per_s": round(rate, 1)})
        if drops > 0:
            fixed = cal

            def few(ms: float, fixed: Calibration = fixed) -> bool:
                return _model(fixed.model_copy(update={"accept_interval_ms": ms}), storm)[1] < drops

            cal = cal.model_copy(update={"accept_interval_ms": round(_bisect_log(0.5, 2000.0, few), 2)})
    t95, model_drops = _model(cal, storm)
    faster, _ = _model(cal.model_copy(update={"accept_rate_per_s": cal.accept_rate_per_s * 1.25}), storm)
    # A storm whose length the backoff set (the fleet came back no faster than it retried) does not say how
    # fast the core is: a quarter more rate would barely shorten it. Such a calibration is flagged.
    limited = not (faster < t95 * (1 - IDENTIFIABLE))
    return cal.model_copy(
        update={
            "fitted_t95_s": round(t95, 3),
            "fitted_syn_drops": round(model_drops),
            "rate_limited_storm": not limited,
        }
    )


def predict_recorded(calibration: Calibration, storm: RecordedStorm) -> StormValidation:
    """Predict a recorded storm (its fleet size, backoff, outage, backlog, SYN retries) and score t95."""
    predictions = predict_fleet_storm(
        calibration, storm.devices, storm.backoff_triple(), SEEDS, **_overrides(storm)
    )
    t95s = [p.t95_s for p in predictions]
    known = [t for t in t95s if t is not None]
    measured = storm.t95_s
    error: float | None = None
    note = ""
    if measured is None:
        note = "the real storm never reached 95 % reconnected"
    elif len(known) < len(t95s):
        note = "the model never reached 95 % reconnected"
    else:
        error = compare(_Mean(statistics.fmean(known)), _Mean(measured))
    return StormValidation(
        devices=storm.devices,
        measured_t95_s=measured,
        predicted_t95_s=[None if t is None else round(t, 3) for t in t95s],
        error=error,
        calibration_devices=calibration.devices,
        note=note,
    )
