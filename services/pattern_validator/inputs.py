"""What the validator keeps of its inputs: recent bars and feature vectors per series.

Bars come from ``market.bars.v1`` and vectors from ``features.vectors.v1`` on their own
consumers, so a signal can overtake its own bar or vector; ``wait_for`` lets it wait briefly.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass

from shared.events import FeatureVector, MarketBar, Timeframe

SeriesKey = tuple[str, Timeframe]
#: Bars kept per series (the gap window, the patterns and staleness need far fewer).
KEPT_BARS = 512
#: Vectors remembered by id (for the signal's own vector), across series.
KEPT_VECTORS = 20_000


@dataclass(frozen=True)
class Candle:
    open_time: int
    open: float
    high: float
    low: float
    close: float


#: A series and feature set: (symbol, timeframe, feature set name).
WindowKey = tuple[str, Timeframe, str]


class Inputs:
    def __init__(self, psi_window: int) -> None:
        self.bars: dict[SeriesKey, OrderedDict[int, Candle]] = {}
        #: Open time of the first bar seen per series: gaps before it are not gaps, just before us.
        self.first_bar: dict[SeriesKey, int] = {}
        self.vectors: OrderedDict[uuid.UUID, FeatureVector] = OrderedDict()
        #: The last ``psi_window`` vectors per series and feature set (the drift check's window)...
        self.windows: dict[WindowKey, deque[FeatureVector]] = {}
        #: ... and how many each has taken in all (how far it moved since the PSI was last computed).
        self.window_taken: dict[WindowKey, int] = {}
        self._psi_window = psi_window
        self._arrived = asyncio.Event()

    def add_bar(self, bar: MarketBar) -> None:
        key = (bar.symbol, bar.timeframe)
        series = self.bars.setdefault(key, OrderedDict())
        self.first_bar.setdefault(key, bar.ts_event)
        if bar.ts_event in series:
            return
        candle = Candle(bar.ts_event, float(bar.open), float(bar.high), float(bar.low), float(bar.close))
        if series and bar.ts_event < next(reversed(series)):
            # Out of order (a replay): insert in place, keep the series sorted.
            items = sorted([*series.items(), (bar.ts_event, candle)])
            series.clear()
            series.update(items)
            self.first_bar[key] = min(self.first_bar[key], bar.ts_event)
        else:
            series[bar.ts_event] = candle
        while len(series) > KEPT_BARS:
            series.popitem(last=False)
        self._wake()

    def add_vector(self, vector: FeatureVector) -> None:
        if vector.event_id in self.vectors:
            return
        self.vectors[vector.event_id] = vector
        while len(self.vectors) > KEPT_VECTORS:
            self.vectors.popitem(last=False)
        key = (vector.symbol, vector.timeframe, vector.feature_set)
        self.windows.setdefault(key, deque(maxlen=self._psi_window)).append(vector)
        self.window_taken[key] = self.window_taken.get(key, 0) + 1
        self._wake()

    def newest_bar(self, key: SeriesKey) -> int | None:
        series = self.bars.get(key)
        return next(reversed(series)) if series else None

    def candles_until(self, key: SeriesKey, open_time: int, count: int) -> list[Candle]:
        """The last ``count`` candles with open time <= ``open_time``, oldest first."""
        series = self.bars.get(key)
        if not series:
            return []
        out = [c for t, c in reversed(series.items()) if t <= open_time][:count]
        out.reverse()
        return out

    async def wait_for(self, ready, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
        """Wait until ``ready()`` holds or ``timeout_s`` passes; whether it holds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not ready():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return ready()
        return True

    def _wake(self) -> None:
        # Wake every waiter; each checks its own condition again.
        self._arrived.set()
        self._arrived = asyncio.Event()
