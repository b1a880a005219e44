"""What a fleet-model run produces (``SimMetrics``) and the counting both engines share to produce it.

Both engines hand the same raw material to ``summarize`` (per-device reconnect times and attempt counts, event
counts per time bin), so a difference between them is a difference in simulation, never in bookkeeping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.sim.config import SimConfig

#: Event kinds counted per time bin.
KINDS = ("attempt", "connect", "queue_in", "queue_out")


class Timeline:
    """Counts of events per ``sample_s`` bin since t = 0, grown as simulated time advances.

    Counting into bins instead of keeping every timestamp keeps a 10^6-device storm (10^7 attempts) at a few
    megabytes; the price is that time series and peaks are resolved to ``sample_s``.
    """

    def __init__(self, sample_s: float, horizon_s: float) -> None:
        self.sample_s = sample_s
        self.horizon_s = horizon_s
        self.counts: dict[str, np.ndarray] = {k: np.zeros(1024, dtype=np.int64) for k in KINDS}

    def add(self, kind: str, times: np.ndarray) -> None:
        """Count ``times`` (seconds) as events of ``kind``; anything after the horizon is not simulated."""
        times = times[times <= self.horizon_s]
        if times.size == 0:
            return
        idx = (times / self.sample_s).astype(np.int64)
        lo = int(idx.min())
        binned = np.bincount(idx - lo)
        hi = lo + binned.size
        arr = self.counts[kind]
        if hi > arr.size:
            grown = np.zeros(max(hi, 2 * arr.size), dtype=np.int64)
            grown[: arr.size] = arr
            self.counts[kind] = arr = grown
        arr[lo:hi] += binned

    def bins(self) -> int:
        """Number of bins up to the last one holding any event."""
        last = 0
        for arr in self.counts.values():
            nz = np.flatnonzero(arr)
            if nz.size:
                last = max(last, int(nz[-1]) + 1)
        return last


@dataclass
class Counters:
    """Attempt outcomes the engines count as they go."""

    handshakes: int = 0
    wasted_handshakes: int = 0
    timeouts: int = 0
    rejected: int = 0
    down_failures: int = 0
    #: SYNs dropped on a full backlog and retransmitted by the client (each attempt counts once per SYN).
    syn_retransmits: int = 0


@dataclass(eq=False)
class Series:
    """Time series sampled every ``sample_s`` seconds; element k is the end of bin k: (k+1)*sample_s."""

    sample_s: float
    reconnected_fraction: np.ndarray
    queue: np.ndarray
    connects_per_s: np.ndarray
    attempts_per_s: np.ndarray

    def times(self) -> np.ndarray:
        return (np.arange(self.reconnected_fraction.size) + 1) * self.sample_s

    def downsampled(self, points: int) -> Series:
        """At most ``points`` samples of k bins each: the reconnected fraction at the end of each, the rates
        averaged over it and the queue's highest sample in it (so the peak survives)."""
        n = self.reconnected_fraction.size
        k = max(1, math.ceil(n / max(points, 1)))
        if k == 1:
            return self
        m = (n // k) * k

        def mean(a: np.ndarray) -> np.ndarray:
            head = a[:m].reshape(-1, k).mean(axis=1)
            return np.append(head, a[m:].mean()) if m < n else head

        def peak(a: np.ndarray) -> np.ndarray:
            head = a[:m].reshape(-1, k).max(axis=1)
            return np.append(head, a[m:].max()) if m < n else head

        pick = np.append(np.arange(k - 1, m, k), n - 1) if m < n else np.arange(k - 1, m, k)
        return Series(
            sample_s=self.sample_s * k,
            reconnected_fraction=self.reconnected_fraction[pick],
            queue=peak(self.queue),
            connects_per_s=mean(self.connects_per_s),
            attempts_per_s=mean(self.attempts_per_s),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "sample_s": self.sample_s,
            "reconnected_fraction": [round(float(v), 6) for v in self.reconnected_fraction],
            "queue": [int(v) for v in self.queue],
            "connects_per_s": [round(float(v), 3) for v in self.connects_per_s],
            "attempts_per_s": [round(float(v), 3) for v in self.attempts_per_s],
        }


@dataclass(eq=False)
class SimMetrics:
    """The outcome of one run. Times are seconds since the disruption; ``None`` means never reached.

    ``attempts_*`` count connection attempts per device (the blog's "calls"), including those against a down
    core; ``handshakes`` is the core's work (handshakes started), ``wasted_handshakes`` those that finished
    after the device had already given up, ``rejected`` attempts that never got into a full backlog (every
    SYN dropped until the deadline or the last SYN retry), ``syn_retransmits`` the SYNs clients resent after
    a drop. ``peak_queue`` is sampled every ``series.sample_s``.
    """

    engine: str
    policy: str
    devices: int
    reconnected: int
    t50_s: float | None
    t95_s: float | None
    t99_s: float | None
    t100_s: float | None
    attempts_total: int
    attempts_mean: float
    attempts_p50: float
    attempts_p99: float
    attempts_max: int
    handshakes: int
    wasted_handshakes: int
    timeouts: int
    rejected: int
    down_failures: int
    syn_retransmits: int
    peak_connect_rate_per_s: float
    peak_attempt_rate_per_s: float
    peak_queue: int
    wall_s: float
    config: SimConfig
    series: Series = field(repr=False)

    def to_json(self, *, series_points: int | None = 2000) -> dict[str, Any]:
        """Plain JSON values; the time series is downsampled to ``series_points`` (None: full resolution)."""
        series = self.series if series_points is None else self.series.downsampled(series_points)
        out = {k: v for k, v in self.__dict__.items() if k not in ("config", "series")}
        out["config"] = self.config.to_json()
        out["series"] = series.to_json()
        return out

    def headline(self) -> dict[str, str]:
        """The figures a report row shows, as text (TestRecord.properties holds strings)."""
        return {
            "devices": str(self.devices),
            "reconnected": str(self.reconnected),
            "t50_s": _fmt(self.t50_s),
            "t95_s": _fmt(self.t95_s),
            "t99_s": _fmt(self.t99_s),
            "attempts_mean": f"{self.attempts_mean:.3f}",
            "attempts_total": str(self.attempts_total),
            "attempts_p99": f"{self.attempts_p99:g}",
            "handshakes": str(self.handshakes),
            "wasted_handshakes": str(self.wasted_handshakes),
            "peak_connect_rate_per_s": f"{self.peak_connect_rate_per_s:.1f}",
            "peak_queue": str(self.peak_queue),
            "engine": self.engine,
            "wall_s": f"{self.wall_s:.2f}",
        }


def _fmt(value: float | None) -> str:
    return "never" if value is None else f"{value:.3f}"


def time_to_fraction(sorted_times: np.ndarray, devices: int, fraction: float) -> float | None:
    """When ``fraction`` of ``devices`` had reconnected (the ceil(fraction*N)-th reconnect), or None."""
    need = max(1, math.ceil(fraction * devices - 1e-9))
    return float(sorted_times[need - 1]) if sorted_times.size >= need else None


def summarize(
    config: SimConfig,
    engine: str,
    connected_at: np.ndarray,
    attempts: np.ndarray,
    timeline: Timeline,
    counters: Counters,
    wall_s: float,
) -> SimMetrics:
    """Turn what an engine recorded into ``SimMetrics``; reconnects after ``horizon_s`` do not count."""
    n = config.devices
    times = np.sort(connected_at[connected_at <= config.horizon_s])
    bins = max(timeline.bins(), 1)
    c = {k: v[:bins] if v.size >= bins else np.pad(v, (0, bins - v.size)) for k, v in timeline.counts.items()}
    dt = timeline.sample_s
    queue = np.cumsum(c["queue_in"]) - np.cumsum(c["queue_out"])
    series = Series(
        sample_s=dt,
        reconnected_fraction=np.cumsum(c["connect"]) / n,
        queue=queue,
        connects_per_s=c["connect"] / dt,
        attempts_per_s=c["attempt"] / dt,
    )
    return SimMetrics(
        engine=engine,
        policy=config.policy,
        devices=n,
        reconnected=int(times.size),
        t50_s=time_to_fraction(times, n, 0.50),
        t95_s=time_to_fraction(times, n, 0.95),
        t99_s=time_to_fraction(times, n, 0.99),
        t100_s=time_to_fraction(times, n, 1.0),
        attempts_total=int(attempts.sum()),
        attempts_mean=float(attempts.mean()),
        attempts_p50=float(np.percentile(attempts, 50)),
        attempts_p99=float(np.percentile(attempts, 99)),
        attempts_max=int(attempts.max()),
        handshakes=counters.handshakes,
        wasted_handshakes=counters.wasted_handshakes,
        timeouts=counters.timeouts,
        rejected=counters.rejected,
        down_failures=counters.down_failures,
        syn_retransmits=counters.syn_retransmits,
        peak_connect_rate_per_s=_peak_rate(c["connect"], dt),
        peak_attempt_rate_per_s=_peak_rate(c["attempt"], dt),
        peak_queue=int(queue.max()) if queue.size else 0,
        wall_s=wall_s,
        config=config,
        series=series,
    )


def _peak_rate(counts: np.ndarray, dt: float) -> float:
    """Most events in any sliding one-second window (in steps of ``dt``), per second."""
    w = max(1, round(1.0 / dt))
    if counts.size <= w:
        return float(counts.sum()) / (w * dt)
    csum = np.concatenate(([0], np.cumsum(counts)))
    return float((csum[w:] - csum[:-w]).max()) / (w * dt)
