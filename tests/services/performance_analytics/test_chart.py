"""The SVG equity chart is well-formed XML with its axes, labels and one point per sample."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np

from services.performance_analytics.chart import BOTTOM, HEIGHT, LEFT, TOP, equity_svg

NS = "{http://www.w3.org/2000/svg}"


def points_of(svg: ET.Element) -> list[tuple[float, float]]:
    line = svg.find(f"{NS}polyline")
    assert line is not None
    pairs = [p.split(",") for p in line.get("points", "").split()]
    return [(float(x), float(y)) for x, y in pairs]


def test_a_curve_is_a_polyline_inside_the_axes_highest_value_on_top():
    ts = np.array([0, 60_000, 120_000], dtype=np.int64)
    svg = ET.fromstring(equity_svg(ts, np.array([100.0, 90.0, 120.0]), "Equity of <A&B>"))
    assert len(svg.findall(f"{NS}line[@class='axis']")) == 2
    (x0, _y0), (x1, y1), (x2, y2) = points_of(svg)
    assert x0 == LEFT and x0 < x1 < x2
    assert y2 == TOP and y1 == HEIGHT - BOTTOM  # 120 at the top, 90 at the bottom of the plot
    title = next(t.text for t in svg.iter(f"{NS}text"))
    assert title == "Equity of <A&B>"  # escaped in the document, read back as written
    labels = [t.text for t in svg.iter(f"{NS}text") if t.get("class") == "y-label"]
    assert labels[0] == "90.00" and labels[-1] == "120.00"


def test_no_data_and_a_flat_curve_still_draw():
    empty = ET.fromstring(equity_svg(np.empty(0, np.int64), np.empty(0), "nothing"))
    assert empty.find(f"{NS}polyline") is None
    assert "no data" in [t.text for t in empty.iter(f"{NS}text")]
    flat = ET.fromstring(equity_svg(np.array([5], np.int64), np.array([100.0]), "one point"))
    [(_x, y)] = points_of(flat)
    assert TOP < y < HEIGHT - BOTTOM  # drawn in the middle of a band around the value
