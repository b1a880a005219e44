"""Memory of the core and of the generator over a load run (scenario L4 soak: no drift over hours).

A background thread samples, every ``interval_s``, the resident memory of the core's broker on the target
(``/proc/<pid>/status`` through the target's own ``run``, so it works on every kind of target) and of this
process (the generator). The samples become the ``load.memory`` block: the series for the report's plot and
the drift of each, in MB per hour, from a least-squares line over the run's second half (the first half
holds the ramp and the allocators' warm-up, which is growth but not drift).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.errors import HarnessError

#: Fewest samples in the second half for a drift figure, and the shortest second half: a few seconds of
#: allocator noise extrapolated to an hour is not a drift.
MIN_DRIFT_SAMPLES = 4
MIN_DRIFT_SPAN_S = 600.0


def rss_mb_from_status(text: str) -> float | None:
    """``VmRSS`` of a ``/proc/<pid>/status`` text, in MB; None when absent (the process is gone)."""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            try:
                return int(parts[1]) / 1024.0
            except (IndexError, ValueError):
                return None
    return None


def own_rss_mb() -> float | None:
    """This process's resident memory now (not the peak ``ru_maxrss`` keeps)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            return rss_mb_from_status(fh.read())
    except OSError:
        return None


def drift_mb_per_h(t_s: Sequence[float], mb: Sequence[float | None]) -> float | None:
    """Least-squares slope of ``mb`` over the second half of the samples, in MB per hour (None when that
    half has too few samples or spans less than ten minutes)."""
    pts = [(t, m) for t, m in zip(t_s, mb, strict=True) if m is not None]
    half = pts[len(pts) // 2 :]
    if len(half) < MIN_DRIFT_SAMPLES or half[-1][0] - half[0][0] < MIN_DRIFT_SPAN_S:
        return None
    n = len(half)
    mt = sum(t for t, _ in half) / n
    mm = sum(m for _, m in half) / n
    var = sum((t - mt) ** 2 for t, _ in half)
    if var <= 0:
        return None
    slope = sum((t - mt) * (m - mm) for t, m in half) / var
    return round(slope * 3600.0, 2)


@dataclass
class MemorySampler:
    """Samples ``core_rss`` (a callable returning MB or None) and this process every ``interval_s``."""

    core_rss: Callable[[], float | None]
    interval_s: float = 5.0
    t_s: list[float] = field(default_factory=list)
    core_mb: list[float | None] = field(default_factory=list)
    generator_mb: list[float | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def __enter__(self) -> MemorySampler:
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="load-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self._sample()  # the end state, always

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval_s)

    def _sample(self) -> None:
        try:
            core = self.core_rss()
        except (HarnessError, OSError):
            core = None  # the core is restarting (L3) or the target is busy: a gap, not an error
        self.t_s.append(round(time.monotonic() - self._t0, 2))
        self.core_mb.append(None if core is None else round(core, 2))
        gen = own_rss_mb()
        self.generator_mb.append(None if gen is None else round(gen, 1))

    def block(self) -> dict[str, Any]:
        """The ``load.memory`` block: series and drift (MB/h) of the core and the generator."""
        return {
            "interval_s": self.interval_s,
            "t_s": self.t_s,
            "core_rss_mb": self.core_mb,
            "generator_rss_mb": self.generator_mb,
            "core_drift_mb_per_h": drift_mb_per_h(self.t_s, self.core_mb),
            "generator_drift_mb_per_h": drift_mb_per_h(self.t_s, self.generator_mb),
        }
