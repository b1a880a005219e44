"""Inline SVG line charts for the simulate report: one line per policy over time, no JS library.

Colours come as SVG presentation attributes (the report's Content-Security-Policy forbids inline styles), from
the Okabe-Ito palette, and every line also has its own dash pattern so the chart reads in greyscale and for
colour-blind readers. Axis text uses the report's ``.chart .lbl`` class so it follows light and dark mode.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import numpy as np

WIDTH = 640
PLOT_H = 240
LEFT = 64
RIGHT = 16
TOP = 12
AXIS_H = 40
LEGEND_ROW = 20
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
DASHES = ("", "8 4", "2 3", "10 3 2 3", "4 4", "1 2")
MAX_POINTS = 600


@dataclass(frozen=True)
class Line:
    """One labelled line: ``x`` and ``y`` of equal length."""

    label: str
    x: np.ndarray
    y: np.ndarray


def line_chart(
    title: str, lines: Sequence[Line], x_label: str, y_label: str, y_max: float | None = None
) -> str:
    """An accessible SVG with one polyline per entry of ``lines``; an empty chart says "no data"."""
    width_plot = WIDTH - LEFT - RIGHT
    height = TOP + PLOT_H + AXIS_H + LEGEND_ROW * len(lines) + 4
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    x_hi = max((float(ln.x.max()) for ln in lines if ln.x.size), default=0.0) or 1.0
    y_hi = y_max if y_max is not None else max((float(ln.y.max()) for ln in lines if ln.y.size), default=0.0)
    y_hi = y_hi or 1.0

    def sx(v: float) -> float:
        return LEFT + width_plot * v / x_hi

    def sy(v: float) -> float:
        return TOP + PLOT_H * (1 - v / y_hi)

    for tick in _ticks(y_hi):
        y = sy(tick)
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="currentColor" '
            'stroke-opacity="0.15"/>'
            f'<text class="lbl" x="{LEFT - 6}" y="{y:.1f}" text-anchor="end" dominant-baseline="middle">'
            f"{escape(_fmt(tick))}</text>"
        )
    for tick in _ticks(x_hi):
        x = sx(tick)
        parts.append(
            f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + PLOT_H}" stroke="currentColor" '
            'stroke-opacity="0.08"/>'
            f'<text class="lbl" x="{x:.1f}" y="{TOP + PLOT_H + 16}" text-anchor="middle">'
            f"{escape(_fmt(tick))}</text>"
        )
    parts.append(
        f'<rect x="{LEFT}" y="{TOP}" width="{width_plot}" height="{PLOT_H}" fill="none" '
        'stroke="currentColor" stroke-opacity="0.4"/>'
        f'<text class="lbl" x="{LEFT + width_plot / 2:.1f}" y="{TOP + PLOT_H + 34}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
        f'<text class="lbl" x="14" y="{TOP + PLOT_H / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {TOP + PLOT_H / 2:.1f})">{escape(y_label)}</text>'
    )
    if not any(ln.x.size for ln in lines):
        parts.append(
            f'<text class="lbl" x="{LEFT + width_plot / 2:.1f}" y="{TOP + PLOT_H / 2:.1f}" '
            'text-anchor="middle">no data</text>'
        )
    for i, ln in enumerate(lines):
        colour, dash = COLOURS[i % len(COLOURS)], DASHES[i % len(DASHES)]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        xs, ys = _thin(ln.x, ln.y)
        points = " ".join(f"{sx(float(a)):.1f},{sy(float(b)):.1f}" for a, b in zip(xs, ys, strict=True))
        if points:
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash_attr} points="{points}">'
                f"<title>{escape(ln.label)}</title></polyline>"
            )
        ly = TOP + PLOT_H + AXIS_H + LEGEND_ROW * i + 10
        parts.append(
            f'<line x1="{LEFT}" y1="{ly}" x2="{LEFT + 36}" y2="{ly}" stroke="{colour}" stroke-width="2"'
            f"{dash_attr}/>"
            f'<text class="lbl" x="{LEFT + 44}" y="{ly}" dominant-baseline="middle">{escape(ln.label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _thin(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most about ``MAX_POINTS`` points: per bucket the lowest and the highest value, in time order, so a
    spiky series (a queue that fills and drains) keeps its peaks instead of aliasing them away."""
    if x.size <= MAX_POINTS:
        return x, y
    buckets = MAX_POINTS // 2
    edges = np.linspace(0, x.size, buckets + 1).astype(np.int64)
    keep: list[int] = []
    for lo, hi in itertools.pairwise(edges.tolist()):
        if hi <= lo:
            continue
        seg = y[lo:hi]
        a, b = lo + int(seg.argmin()), lo + int(seg.argmax())
        keep.extend(sorted({a, b}))
    keep.append(x.size - 1)
    idx = np.unique(np.asarray(keep, dtype=np.int64))
    return x[idx], y[idx]


def _ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to ``top`` (1, 2 or 5 times a power of ten apart)."""
    raw = top / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    n = int(top // step)
    return [i * step for i in range(n + 1)]


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 10000:
        return f"{value / 1000:g}k"
    return f"{value:g}"
