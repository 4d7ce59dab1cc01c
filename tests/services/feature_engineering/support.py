"""Bars for feature-engineering's tests."""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from shared.events import MarketBar, Timeframe, bar_event_id

BASE_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
M1 = Timeframe.M1


def make_bars(symbol: str, n: int, *, seed: int = 11, start_ns: int = BASE_NS) -> list[MarketBar]:
    """``n`` consecutive M1 bars of a random walk (prices with 5 decimals, as a quote has)."""
    rng = np.random.default_rng(seed)
    close = 1.1 + np.cumsum(rng.normal(0, 0.0005, n))
    bars = []
    for i in range(n):
        o = close[i - 1] if i else close[0]
        h = max(o, close[i]) + abs(rng.normal(0, 0.0002))
        low = min(o, close[i]) - abs(rng.normal(0, 0.0002))
        ts = start_ns + i * M1.nanos
        bars.append(
            MarketBar(
                event_id=bar_event_id(symbol, M1, ts),
                ts_event=ts,
                ts_init=ts + M1.nanos,
                symbol=symbol,
                timeframe=M1,
                open=Decimal(f"{o:.5f}"),
                high=Decimal(f"{h:.5f}"),
                low=Decimal(f"{low:.5f}"),
                close=Decimal(f"{close[i]:.5f}"),
                volume=int(rng.integers(1, 300)),
            )
        )
    return bars
