"""A tiny inline SVG bar chart for the load section: generated in Python so the report needs no JS library.

Horizontal bars, because their labels stay readable on a 375 px phone screen; the chart scales with its box.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

ROW = 28
LABEL_W = 90
BAR_W = 420
VALUE_W = 110
WIDTH = LABEL_W + BAR_W + VALUE_W


def bar_chart(title: str, bars: Sequence[tuple[str, float | None]], unit: str) -> str:
    """An accessible SVG of ``bars`` (label, value); a missing value is drawn as "no data", not as zero."""
    values = [v for _, v in bars if v is not None and math.isfinite(v)]
    top = max(values, default=0.0) or 1.0
    height = ROW * len(bars) + 8
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for i, (label, value) in enumerate(bars):
        y = 4 + i * ROW
        mid = y + ROW / 2
        parts.append(
            f'<text class="lbl" x="{LABEL_W - 8}" y="{mid:.1f}" text-anchor="end" '
            f'dominant-baseline="middle">{escape(label)}</text>'
        )
        if value is None or not math.isfinite(value):
            parts.append(
                f'<text class="val" x="{LABEL_W + 4}" y="{mid:.1f}" dominant-baseline="middle">no data</text>'
            )
            continue
        width = max(BAR_W * max(value, 0.0) / top, 1.0)
        parts.append(
            f'<rect class="bar b{i % 3}" x="{LABEL_W}" y="{y + 4}" width="{width:.1f}" '
            f'height="{ROW - 8}" rx="3"/>'
        )
        parts.append(
            f'<text class="val" x="{LABEL_W + width + 6:.1f}" y="{mid:.1f}" '
            f'dominant-baseline="middle">{escape(_fmt(value))} {escape(unit)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
