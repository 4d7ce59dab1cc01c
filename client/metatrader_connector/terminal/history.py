"""Range queries over a symbol's history: ticks and bars as the terminal sees them.

A history answers "ticks between A and B" and "bars of timeframe T between A
and B" for a source organised by UTC day (the generator, or a replayed tick
export), or for a replayed bar export.  Every query takes the terminal's
``now``: nothing after it is visible, and the bar containing it is partial,
exactly like the forming bar of a live chart.

Days are the unit of caching: ticks of the few most recent days asked for,
and M1 bars of many complete past days, so that repeated or overlapping
requests (a strategy polling ``copy_rates_from_pos``) cost almost nothing.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import numpy as np

from . import bars as b
from . import constants as c
from .market_model import DAY_SECONDS, EPOCH, day_index, day_start

_FAR_FUTURE_DAY = 10**7
EMPTY_TICKS = np.empty(0, dtype=c.TICKS_DTYPE)
EMPTY_BARS = np.empty(0, dtype=b.WORK_DTYPE)


class DaySource(Protocol):
    """Anything that yields the full tick array of a UTC day (see MarketModel)."""

    first_day: int
    last_day: int | None

    def day_ticks(self, day: int) -> np.ndarray: ...


class _LRU:
    """A small thread-safe least-recently-used cache."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._data: OrderedDict[object, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: object, compute: Callable[[], np.ndarray]) -> np.ndarray:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = compute()  # outside the lock: pure, so a duplicate is harmless
        value.setflags(write=False)  # cached arrays are shared; callers copy
        with self._lock:
            self._data[key] = value
            while len(self._data) > self._size:
                self._data.popitem(last=False)
        return value


def select_ticks(ticks: np.ndarray, flags: int) -> np.ndarray:
    """Filter ticks like copy_ticks_*'s ``flags`` argument (COPY_TICKS_*)."""
    if flags == c.COPY_TICKS_INFO:
        return ticks[(ticks["flags"] & (c.TICK_FLAG_BID | c.TICK_FLAG_ASK)) != 0]
    if flags == c.COPY_TICKS_TRADE:
        return ticks[(ticks["flags"] & (c.TICK_FLAG_LAST | c.TICK_FLAG_VOLUME)) != 0]
    return ticks


class TickHistory:
    """Ticks and bars of a symbol whose history is a sequence of tick days."""

    def __init__(self, source: DaySource, point: float) -> None:
        self.source = source
        self.point = point
        self._ticks = _LRU(12)  # ~2.5 MB per FX day
        self._bar_cache = {
            c.TIMEFRAME_M1: _LRU(400),  # ~80 KB per day: M1..M30 over a year
            c.TIMEFRAME_H1: _LRU(4000),  # ~1.3 KB per day: H1..H12 over a decade
            c.TIMEFRAME_D1: _LRU(40_000),  # one row per day: D1/W1/MN1, all history
        }

    @property
    def start_msc(self) -> int:
        """Time of the first moment with data (start of the first day)."""
        return day_start(self.source.first_day) * 1000

    def _last_day(self) -> int:
        last = self.source.last_day
        return _FAR_FUTURE_DAY if last is None else last

    def _day_ticks(self, day: int) -> np.ndarray:
        if day < self.source.first_day or day > self._last_day():
            return EMPTY_TICKS
        return self._ticks.get(day, lambda: self.source.day_ticks(day))

    # --- ticks ----------------------------------------------------------------
    def ticks_range(self, start_msc: int, end_msc: int) -> np.ndarray:
        """Ticks with ``start_msc <= time_msc <= end_msc`` (a fresh array)."""
        first = max(self.source.first_day, day_index(start_msc // 1000))
        last = min(self._last_day(), day_index(end_msc // 1000))
        parts = []
        for day in range(first, last + 1):
            ticks = self._day_ticks(day)
            lo = np.searchsorted(ticks["time_msc"], start_msc, side="left")
            hi = np.searchsorted(ticks["time_msc"], end_msc, side="right")
            parts.append(ticks[lo:hi])
        return np.concatenate(parts) if parts else EMPTY_TICKS.copy()

    def ticks_from(self, start_msc: int, count: int, end_msc: int, flags: int) -> np.ndarray:
        """The first ``count`` ticks (after ``flags`` filtering) at or after
        ``start_msc`` and not after ``end_msc``."""
        day = max(self.source.first_day, day_index(start_msc // 1000))
        last = min(self._last_day(), day_index(end_msc // 1000))
        parts, found = [], 0
        while day <= last and found < count:
            ticks = self._day_ticks(day)
            t = ticks["time_msc"]
            part = ticks[(t >= start_msc) & (t <= end_msc)]
            part = select_ticks(part, flags)[: count - found]
            parts.append(part)
            found += part.size
            day += 1
        return np.concatenate(parts) if parts else EMPTY_TICKS.copy()

    def last_tick(self, now_msc: int, max_days_back: int = 14) -> np.void | None:
        """The latest tick at or before ``now_msc`` (looking back two weeks)."""
        day = min(self._last_day(), day_index(now_msc // 1000))
        stop = max(self.source.first_day, day - max_days_back)
        while day >= stop:
            ticks = self._day_ticks(day)
            i = np.searchsorted(ticks["time_msc"], now_msc, side="right")
            if i:
                return ticks[i - 1].copy()
            day -= 1
        return None

    # --- bars -------------------------------------------------------------------
    def _day_bars(self, day: int, base: int, now_msc: int) -> np.ndarray:
        """Bars of ``base`` (M1, H1 or D1) for one day, cached once the day is over."""
        if (day_start(day) + DAY_SECONDS) * 1000 > now_msc:
            # The day is still running: bars only from the ticks seen so far.
            ticks = self._day_ticks(day)
            visible = ticks[: np.searchsorted(ticks["time_msc"], now_msc, side="right")]
            return b.ticks_to_bars(visible, base, self.point)

        def compute() -> np.ndarray:
            if base == c.TIMEFRAME_M1:
                return b.ticks_to_bars(self._day_ticks(day), base, self.point)
            return b.aggregate(self._day_bars(day, c.TIMEFRAME_M1, now_msc), base)

        return self._bar_cache[base].get(day, compute)

    def rates_range(self, timeframe: int, start: int, end: int, now_msc: int) -> np.ndarray:
        """Work bars whose opening time is in ``[start, end]`` (seconds)."""
        first_open = int(b.bar_open_time(start, timeframe))
        last_open = int(b.bar_open_time(end, timeframe))
        # Bars are built from whole periods (the last one up to ``now``).
        until_msc = min(b.next_bar_time(last_open, timeframe) * 1000 - 1, now_msc)
        if until_msc < first_open * 1000:
            return EMPTY_BARS.copy()
        first_day = max(self.source.first_day, day_index(first_open))
        last_day = min(self._last_day(), day_index(until_msc // 1000))
        # Every timeframe divides (or is made of) one of these per-day bases,
        # so a week of H4 bars costs 7x24 cached H1 rows, not 7x1440 M1 rows.
        base = _base_timeframe(timeframe)
        parts = [self._day_bars(day, base, now_msc) for day in range(first_day, last_day + 1)]
        if not parts:
            return EMPTY_BARS.copy()
        rows = np.concatenate(parts)
        rows = rows[(rows["time"] >= first_open) & (rows["time"] * 1000 <= until_msc)]
        out = rows if timeframe == base else b.aggregate(rows, timeframe)
        return out[(out["time"] >= start) & (out["time"] <= end)]

    def rates_before(self, timeframe: int, end: int, count: int, now_msc: int) -> np.ndarray:
        """The latest ``count`` work bars opening at or before ``end``."""
        return _latest_bars(self, timeframe, end, count, now_msc)


class BarHistory:
    """A replayed bar export: bars of one base timeframe, no ticks."""

    def __init__(self, bars: np.ndarray, point: float) -> None:
        self.bars = np.sort(bars, order="time")
        self.point = point
        self.base_timeframe = infer_timeframe(self.bars["time"])

    @property
    def start_msc(self) -> int:
        return int(self.bars["time"][0]) * 1000 if self.bars.size else EPOCH * 1000

    def ticks_range(self, start_msc: int, end_msc: int) -> np.ndarray:
        return EMPTY_TICKS.copy()  # a bar export has no ticks to replay

    def ticks_from(self, start_msc: int, count: int, end_msc: int, flags: int) -> np.ndarray:
        return EMPTY_TICKS.copy()

    def last_tick(self, now_msc: int, max_days_back: int = 14) -> np.void | None:
        """A quote synthesised from the close and spread of the latest bar."""
        visible = self.bars[self.bars["time"] * 1000 <= now_msc]
        if not visible.size:
            return None
        bar = visible[-1]
        tick = np.zeros(1, dtype=c.TICKS_DTYPE)[0]
        tick["time"] = bar["time"]
        tick["time_msc"] = bar["time"] * 1000
        tick["bid"] = bar["close"]
        tick["ask"] = bar["close"] + max(int(bar["spread"]), 1) * self.point
        tick["flags"] = c.TICK_FLAG_BID | c.TICK_FLAG_ASK
        return tick

    def _compatible(self, timeframe: int) -> bool:
        base = b.timeframe_seconds(self.base_timeframe)
        if timeframe == self.base_timeframe:
            return True
        if timeframe in (c.TIMEFRAME_W1, c.TIMEFRAME_MN1):
            return base <= DAY_SECONDS
        target = b.timeframe_seconds(timeframe)
        return self.base_timeframe not in (c.TIMEFRAME_W1, c.TIMEFRAME_MN1) and (target > base and target % base == 0)

    def rates_range(self, timeframe: int, start: int, end: int, now_msc: int) -> np.ndarray:
        if not self._compatible(timeframe):
            return EMPTY_BARS.copy()  # cannot build finer bars than the export's
        visible = self.bars[self.bars["time"] * 1000 <= now_msc]
        out = visible if timeframe == self.base_timeframe else b.aggregate(visible, timeframe)
        return out[(out["time"] >= start) & (out["time"] <= end)]

    def rates_before(self, timeframe: int, end: int, count: int, now_msc: int) -> np.ndarray:
        return _latest_bars(self, timeframe, end, count, now_msc)


def _latest_bars(history, timeframe: int, end: int, count: int, now_msc: int) -> np.ndarray:
    """The last ``count`` bars opening at or before ``end``, found by looking
    back over a window that doubles until it holds enough bars or reaches the
    start of the history (so weekends and gaps need no special casing)."""
    end = min(end, now_msc // 1000)
    start_limit = history.start_msc // 1000
    # First guess: intraday and daily bars skip weekends (x1.45); weekly and
    # monthly bars exist for every period.  Plus one period and a weekend.
    period = b.timeframe_seconds(timeframe)
    factor = 1.45 if period <= DAY_SECONDS else 1.0
    span = int(count * period * factor) + period + 4 * DAY_SECONDS
    while True:
        start = end - span
        found = history.rates_range(timeframe, start, end, now_msc)
        if found.size >= count or start <= start_limit:
            return found[-count:]
        span *= 2


def _base_timeframe(timeframe: int) -> int:
    """The per-day bar granularity a timeframe is aggregated from."""
    if timeframe in (c.TIMEFRAME_D1, c.TIMEFRAME_W1, c.TIMEFRAME_MN1):
        return c.TIMEFRAME_D1
    return c.TIMEFRAME_H1 if timeframe & 0x4000 else c.TIMEFRAME_M1


def infer_timeframe(times: np.ndarray) -> int:
    """The timeframe of a bar series, from the smallest gap between bars."""
    gaps = np.diff(np.unique(times))
    if gaps.size == 0:
        return c.TIMEFRAME_D1
    gap = int(gaps.min())
    if gap >= 28 * DAY_SECONDS:
        return c.TIMEFRAME_MN1
    for timeframe in c.TIMEFRAMES:
        if b.timeframe_seconds(timeframe) == gap:
            return timeframe
    raise ValueError(f"bars are {gap} s apart, which is no MT5 timeframe")
