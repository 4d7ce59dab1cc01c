"""An equity curve as a self-contained SVG: a polyline inside axes, with value and time labels.

Written by hand (no plotting library is installed, and one polyline does not need one).
"""

from __future__ import annotations

import datetime as dt
from xml.sax.saxutils import escape

import numpy as np

WIDTH, HEIGHT = 800, 320
LEFT, RIGHT, TOP, BOTTOM = 90, 20, 36, 44
Y_TICKS = 5


def _time_label(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _money_label(value: float) -> str:
    return f"{value:,.2f}"


def equity_svg(ts_ms: np.ndarray, equity: np.ndarray, title: str) -> str:
    """The curve of ``equity`` over ``ts_ms`` (ascending, ms since the epoch), titled ``title``."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-size="14">{escape(title)}</text>',
        # the axes
        f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="black"/>',
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" stroke="black"/>',
    ]
    if len(ts_ms) == 0:
        parts.append(f'<text x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" text-anchor="middle">no data</text>')
        parts.append("</svg>")
        return "\n".join(parts)
    t0, t1 = int(ts_ms[0]), int(ts_ms[-1])
    lo, hi = float(np.min(equity)), float(np.max(equity))
    if hi == lo:  # a flat curve: a band around it, so it is drawn in the middle
        pad = abs(hi) * 0.01 or 1.0
        lo, hi = lo - pad, hi + pad
    span_t = (t1 - t0) or 1

    def x(t: float) -> float:
        return LEFT + (t - t0) / span_t * plot_w if t1 > t0 else LEFT + plot_w / 2

    def y(v: float) -> float:
        return TOP + (hi - v) / (hi - lo) * plot_h

    for i in range(Y_TICKS):
        value = lo + (hi - lo) * i / (Y_TICKS - 1)
        yy = y(value)
        parts.append(f'<line x1="{LEFT - 4}" y1="{yy:.1f}" x2="{LEFT + plot_w}" y2="{yy:.1f}" stroke="#ddd"/>')
        parts.append(
            f'<text class="y-label" x="{LEFT - 6}" y="{yy + 4:.1f}" text-anchor="end">{_money_label(value)}</text>'
        )
    for t, anchor in ((t0, "start"), (t1, "end")):
        parts.append(
            f'<text class="x-label" x="{x(t):.1f}" y="{TOP + plot_h + 18}" text-anchor="{anchor}">'
            f"{_time_label(t)} UTC</text>"
        )
    points = " ".join(f"{x(float(t)):.1f},{y(float(v)):.1f}" for t, v in zip(ts_ms, equity, strict=True))
    parts.append(f'<polyline class="equity" fill="none" stroke="#1f77b4" stroke-width="1.5" points="{points}"/>')
    parts.append("</svg>")
    return "\n".join(parts)
