"""Percentiles and rates as the load report states them: nearest-rank, None when there is no sample."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of already sorted values; None for no values.

    Nearest rank, not interpolation: the value reported is one that was actually measured.
    """
    n = len(sorted_values)
    if n == 0:
        return None
    rank = max(1, math.ceil(q / 100.0 * n))
    return float(sorted_values[min(rank, n) - 1])


def percentiles(values: Sequence[float], qs: tuple[float, ...] = (50, 95, 99)) -> dict[str, float | None]:
    """``{"p50": ..., "p95": ..., "p99": ...}`` rounded to 0.01 ms."""
    ordered = sorted(values)
    out: dict[str, float | None] = {}
    for q in qs:
        v = percentile(ordered, q)
        out[f"p{q:g}"] = None if v is None else round(v, 2)
    return out


def peak_rate(times_ns: Sequence[int], start_ns: int, bin_s: float = 1.0) -> float:
    """The largest number of events in one ``bin_s`` window after ``start_ns``, per second."""
    if not times_ns:
        return 0.0
    width = int(bin_s * 1e9)
    bins: dict[int, int] = {}
    for t in times_ns:
        if t >= start_ns:
            k = (t - start_ns) // width
            bins[k] = bins.get(k, 0) + 1
    return max(bins.values(), default=0) / bin_s
