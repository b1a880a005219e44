"""The load section's plots: connections and throughput over time, and the latency histogram, as inline SVG.

They read only the ``load`` block of results.json (``series`` and ``latency_histogram``, written by the fleet
ledger), so a report re-rendered from results.json alone draws the same plots. The line charts are the fleet
model's (``harness.sim.plot``), so ``harness load`` and ``harness simulate`` reports look alike.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from harness.report.svg import bar_chart
from harness.sim.plot import Line, line_chart


def _floats(value: Any) -> np.ndarray:
    if not isinstance(value, list):
        return np.zeros(0)
    try:
        out = np.asarray([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        return np.zeros(0)
    return out if np.all(np.isfinite(out)) else np.zeros(0)


def series_charts(series: dict[str, Any]) -> list[str]:
    """Connections over time, and publishes and deliveries per second over time (empty without data)."""
    t = _floats(series.get("t_s"))
    if t.size == 0:
        return []
    charts: list[str] = []
    online = _floats(series.get("connected"))
    if online.size == t.size:
        charts.append(
            "<h3>connections over time</h3>"
            + line_chart("devices connected over time", [Line("connected", t, online)], "seconds", "devices")
        )
    lines = [
        Line(label, t, y)
        for label, key in (("published", "published_msg_s"), ("received", "received_msg_s"))
        if (y := _floats(series.get(key))).size == t.size and y.any()
    ]
    if lines:
        charts.append(
            "<h3>throughput over time</h3>"
            + line_chart("messages per second over time", lines, "seconds", "msg/s")
        )
    return charts


def memory_charts(memory: dict[str, Any]) -> list[str]:
    """Resident memory of the core and of the generator over the run (L4 soak); gaps (a restarting core)
    are left out of the line."""
    t = _floats(memory.get("t_s"))
    lines: list[Line] = []
    for label, key in (("core", "core_rss_mb"), ("generator", "generator_rss_mb")):
        raw = memory.get(key)
        if not isinstance(raw, list) or len(raw) != t.size:
            continue
        keep = [i for i, v in enumerate(raw) if isinstance(v, int | float) and math.isfinite(v)]
        if keep:
            lines.append(Line(label, t[keep], np.asarray([float(raw[i]) for i in keep])))
    if not lines:
        return []
    return ["<h3>memory over time</h3>" + line_chart("resident memory over time", lines, "seconds", "MB")]


def latency_histogram_chart(histogram: list[Any]) -> str:
    """Bars of deliveries per latency bin, labelled by the bin's upper bound."""
    bars: list[tuple[str, float | None]] = []
    for item in histogram:
        if not (isinstance(item, list | tuple) and len(item) == 2):
            continue
        try:
            upper, count = float(item[0]), float(item[1])
        except (TypeError, ValueError):
            continue
        if math.isfinite(upper):
            bars.append((f"<= {_ms(upper)}", count))
    return "<h3>delivery latency</h3>" + bar_chart("deliveries per latency bin", bars, "msgs")


def _ms(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:g} s"
    return f"{value:g} ms"
