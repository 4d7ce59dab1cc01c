"""A tiny stand-in for ``shared.features.FeatureSet`` (same API), until the real one lands:
``close`` and the 1- and 3-bar log returns (missing until warm)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np

from shared.events import MarketBar, Timeframe
from shared.ml.dataset import BarSeries


class StandInState:
    def __init__(self) -> None:
        self.closes: deque[float] = deque(maxlen=4)

    def update(self, bar: MarketBar) -> dict[str, float | None]:
        self.closes.append(float(bar.close))
        c = self.closes

        def ret(k: int) -> float | None:
            return math.log(c[-1] / c[-1 - k]) if len(c) > k else None

        return {"close": c[-1], "ret_1": ret(1), "ret_3": ret(3)}


class StandInFeatureSet:
    name = "stand-in-1"
    names: Sequence[str] = ("close", "ret_1", "ret_3")

    def new_state(self) -> StandInState:
        return StandInState()


def stand_in() -> StandInFeatureSet:
    """The factory a training job names (importable, so a worker process builds the same set)."""
    return StandInFeatureSet()


T0_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z


def random_walk(n: int, seed: int = 1, symbol: str = "EURUSD", timeframe: Timeframe = Timeframe.M1) -> BarSeries:
    """Bars of a random walk whose returns carry a little momentum (something to learn)."""
    rng = np.random.default_rng(seed)
    r = np.zeros(n)
    noise = rng.normal(0, 0.0005, n)
    for i in range(1, n):
        r[i] = 0.3 * r[i - 1] + noise[i]
    close = np.round(1.1 * np.exp(np.cumsum(r)), 5)
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) + 0.0001
    low = np.minimum(open_, close) - 0.0001
    ts = T0_NS + np.arange(n, dtype=np.int64) * timeframe.nanos
    return BarSeries(symbol, timeframe, ts, open_, np.round(high, 5), np.round(low, 5), close, rng.integers(1, 100, n))
