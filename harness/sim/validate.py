"""Validation hook: predict a real reconnect storm from a calibration, and score the prediction.

The model earns trust only by predicting a run it was not fitted to: calibrate on a small real run, predict a
storm at another fleet size, run that storm for real (the fleet engine), compare the time until 95 % of the
devices were back. Procedure (also in ``harness simulate --help``):

1. Measure: ``harness load`` (or ``bench/bench_handshakes.py``) at low concurrency for the handshake service
   time and at saturation for the accept rate; save with ``save_calibration``.
2. Predict: ``predict(calibration, devices=5000, policy=..., event="rotation", ...)`` with the clients' real
   connect timeout, keep-alive and backoff settings.
3. Measure the storm: restart (or rotate the certificate of) the core under the fleet engine with the same
   settings; collect each device's reconnect time since the restart, e.g. with ``MeasuredStorm.from_times``
   or ``MeasuredStorm.from_measurements``.
4. ``compare(predicted, measured)``: the signed relative error of the time to 95 % reconnected; the target is
   ``abs(error) <= 0.15`` at 5,000 devices or more.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from harness.records import Measurement
from harness.sim.calibration import Calibration
from harness.sim.config import Policy, SimConfig
from harness.sim.metrics import SimMetrics, time_to_fraction
from harness.sim.run import Engine, simulate

#: ``Measurement.request_type`` of a device's connect in the fleet engine's records.
CONNECT = "CONNECT"


class HasT95(Protocol):
    """Anything that knows when 95 % of the fleet had reconnected (``SimMetrics``, ``MeasuredStorm``)."""

    @property
    def t95_s(self) -> float | None: ...


@dataclass(frozen=True)
class MeasuredStorm:
    """A real reconnect storm: each device's reconnect time in seconds since the disruption."""

    devices: int
    reconnect_times_s: tuple[float, ...]

    @classmethod
    def from_times(cls, devices: int, times_s: Iterable[float]) -> MeasuredStorm:
        """From per-device reconnect times (seconds since the disruption; one per reconnected device)."""
        times = tuple(sorted(float(t) for t in times_s if math.isfinite(t)))
        if len(times) > devices:
            raise ValueError(f"{len(times)} reconnect times for {devices} devices: one per device, please")
        return cls(devices=devices, reconnect_times_s=times)

    @classmethod
    def from_measurements(
        cls, devices: int, records: Iterable[Measurement], disruption_at_s: float
    ) -> MeasuredStorm:
        """From the fleet engine's records: successful ``CONNECT`` records whose ``context`` holds ``device``
        (its id) and ``end_s`` (when the CONNACK arrived, on the same clock as ``disruption_at_s``).

        The first successful connect of each device after the disruption counts; failed attempts (records
        with an ``exception``) are ignored here.
        """
        first: dict[str, float] = {}
        for rec in records:
            if rec.request_type != CONNECT or rec.exception is not None:
                continue
            try:
                device = str(rec.context["device"])
                end = float(rec.context["end_s"]) - disruption_at_s
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"CONNECT record {rec.name!r}: context needs 'device' and 'end_s'") from exc
            if end >= 0 and (device not in first or end < first[device]):
                first[device] = end
        return cls.from_times(devices, first.values())

    def _at(self, fraction: float) -> float | None:
        return time_to_fraction(np.asarray(self.reconnect_times_s), self.devices, fraction)

    @property
    def t50_s(self) -> float | None:
        return self._at(0.50)

    @property
    def t95_s(self) -> float | None:
        return self._at(0.95)

    @property
    def t99_s(self) -> float | None:
        return self._at(0.99)


def calibrated_config(calibration: Calibration, devices: int, policy: Policy, **overrides: Any) -> SimConfig:
    """The ``SimConfig`` a calibration implies: its service-time distribution, its accept rate as the core's
    rate limit (burst = one per slot), and enough slots to reach that rate; ``overrides`` win."""
    fields: dict[str, Any] = {
        "devices": devices,
        "policy": policy,
        "handshake": calibration.service_time(),
        "concurrency": calibration.model_concurrency(),
        "rate_limit_per_s": calibration.accept_rate_per_s,
    }
    if calibration.connect_timeout_ms is not None:
        fields["connect_timeout_s"] = calibration.connect_timeout_ms / 1000
    if calibration.backlog is not None:
        fields["backlog"] = calibration.backlog
    if calibration.syn_retries is not None:
        fields["syn_retries"] = calibration.syn_retries
    if calibration.accept_interval_ms is not None and calibration.backlog is not None:
        fields["accept_interval_s"] = calibration.accept_interval_ms / 1000
    if calibration.outage_s is not None:
        fields["outage_s"] = calibration.outage_s
    fields.update(overrides)
    return SimConfig(**fields)


#: The fleet's backoff policy names (``harness.fleet.backoff``) and the model's.
FLEET_POLICIES: dict[str, Policy] = {
    "none": "none",
    "fixed": "fixed",
    "exponential": "exponential",
    "full-jitter": "full",
    "equal-jitter": "equal",
    "decorrelated-jitter": "decorrelated",
}


def fleet_policy(name: str, base_s: float, cap_s: float) -> tuple[Policy, float, float]:
    """The model's (policy, base, cap) that backs off exactly like the fleet's policy ``name``.

    The fleet counts failures from 0 (its first retry of ``exponential`` waits ``base``), the model from 1 as
    the blog's simulator does (2 x base), so the exponential family maps to half the base; decorrelated
    jitter, fixed and none do not count failures and map unchanged.
    """
    try:
        policy = FLEET_POLICIES[name]
    except KeyError:
        raise ValueError(f"fleet backoff policy {name!r}: allowed: {', '.join(FLEET_POLICIES)}") from None
    if policy in ("exponential", "full", "equal"):
        return policy, base_s / 2, cap_s
    return policy, base_s, cap_s


def predict_fleet_storm(
    calibration: Calibration,
    devices: int,
    backoff: tuple[str, float, float],
    seeds: Sequence[int] = (1, 2, 3),
    **overrides: Any,
) -> list[SimMetrics]:
    """Predict a real restart/rotation storm of the fleet engine (``harness load --storm``): every device
    notices at once and tries once at once, the core refuses connections for the calibration's outage, the
    fleet's ``backoff`` (name, base, cap) maps through ``fleet_policy``; one prediction per seed."""
    policy, base, cap = fleet_policy(*backoff)
    fields: dict[str, Any] = {"event": "rotation", "base_s": base, "cap_s": cap, "keepalive_s": 30.0}
    fields.update(overrides)
    return predict_seeds(calibration, devices, policy, seeds, **fields)


def predict(
    calibration: Calibration,
    devices: int,
    policy: Policy,
    *,
    engine: Engine = "cohort",
    **overrides: Any,
) -> SimMetrics:
    """Predict a storm of ``devices`` under ``policy`` from a measured ``calibration``.

    ``overrides`` are ``SimConfig`` fields (event, outage_s, keepalive_s, base_s, cap_s, seed, ...) that must
    match the real storm being predicted.
    """
    return simulate(calibrated_config(calibration, devices, policy, **overrides), engine)


def predict_seeds(
    calibration: Calibration, devices: int, policy: Policy, seeds: Sequence[int], **overrides: Any
) -> list[SimMetrics]:
    """``predict`` once per seed, for the spread a single real storm should fall in."""
    base = calibrated_config(calibration, devices, policy, **overrides)
    return [simulate(replace(base, seed=s)) for s in seeds]


def compare(predicted: HasT95, measured: HasT95) -> float:
    """Signed relative error of the predicted time to 95 % reconnected: (predicted - measured) / measured.

    Positive means the model is pessimistic. Raises ``ValueError`` when either storm never reached 95 %,
    because then there is no time to compare (report that instead of a made-up number).
    """
    p, m = predicted.t95_s, measured.t95_s
    if p is None or m is None:
        which = "prediction" if p is None else "measured storm"
        raise ValueError(f"the {which} never reached 95 % reconnected; no time to compare")
    if m <= 0:
        raise ValueError(f"measured time to 95 % is {m!r} s; it must be > 0 to compare relatively")
    return (p - m) / m
