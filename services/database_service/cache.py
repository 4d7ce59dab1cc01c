"""The hot window of the bars API: the latest bars of each series, in memory, kept coherent.

ClickHouse answers a bars query in 2-5 ms and serialises queries, which caps the
API near a few hundred requests/s. Most reads ask for the latest bars, so each
instance keeps the newest ``capacity`` bars per (symbol, timeframe).

Coherence: the cache is the union of (a) a ClickHouse read of the series, made
the first time it is asked for, and (b) every bar on ``market.bars.v1``, which
each instance reads in full, without a consumer group, from the earliest
offset. Any bar missing from (a) because it was not stored yet is in (b), so a
series is complete from ``complete_from`` on; a query reaching older than that
goes to ClickHouse. This holds with any number of instances: none depends on
which partitions it happens to store.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence

from services.database_service.repository import BarRow
from shared.events import Timeframe

#: ``complete_from`` value of a series whose whole history is in memory.
ALL_HISTORY = -(1 << 62)

SeriesKey = tuple[str, Timeframe]


class _Series:
    __slots__ = ("complete_from", "rows", "ts")

    def __init__(self) -> None:
        self.ts: list[int] = []
        self.rows: list[BarRow] = []
        #: None until ClickHouse has been read for this series: only feed bars are known.
        self.complete_from: int | None = None

    def upsert(self, row: BarRow) -> None:
        i = bisect_left(self.ts, row.ts_ms)
        if i < len(self.ts) and self.ts[i] == row.ts_ms:
            self.rows[i] = row  # the same bar again (redelivery or rebuild): same content
        else:
            self.ts.insert(i, row.ts_ms)
            self.rows.insert(i, row)

    def trim(self, capacity: int) -> None:
        excess = len(self.ts) - capacity
        if excess > 0:
            del self.ts[:excess]
            del self.rows[:excess]
            if self.complete_from is not None:
                self.complete_from = max(self.complete_from, self.ts[0])


class BarCache:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._series: dict[SeriesKey, _Series] = {}
        #: False until the feed has replayed the topic up to where it stood at start-up.
        self.caught_up = False
        #: Per series, how many history imports were merged: a ClickHouse read of the series that
        #: began before one (it may lack its bars) is read again (``MarketData``'s series reader).
        self._history: dict[SeriesKey, int] = {}

    def history_version(self, key: SeriesKey) -> int:
        return self._history.get(key, 0)

    def apply(self, symbol: str, timeframe: Timeframe, row: BarRow) -> None:
        """A bar from the feed."""
        series = self._series.get((symbol, timeframe))
        if series is None:
            series = self._series[(symbol, timeframe)] = _Series()
        series.upsert(row)
        series.trim(self.capacity)

    def is_loaded(self, key: SeriesKey) -> bool:
        series = self._series.get(key)
        return series is not None and series.complete_from is not None

    def load(self, key: SeriesKey, stored: Sequence[BarRow]) -> None:
        """Merge the newest ``capacity`` stored bars (oldest first) of a series read from ClickHouse."""
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series()
        for row in stored:
            i = bisect_left(series.ts, row.ts_ms)
            if i == len(series.ts) or series.ts[i] != row.ts_ms:  # the feed's copy is at least as new
                series.ts.insert(i, row.ts_ms)
                series.rows.insert(i, row)
        full = len(stored) >= self.capacity
        series.complete_from = stored[0].ts_ms if full and stored else ALL_HISTORY
        series.trim(self.capacity)

    def merge_history(self, key: SeriesKey, stored: Sequence[BarRow]) -> None:
        """Bars this instance just stored from history (``POST /api/v1/market/bars/import``).

        They never reach the feed (history is not on ``market.bars.v1``), so a loaded series
        would miss the ones inside its complete range. Only those are merged, and only where
        the series has no bar of that time (a live bar wins, as in the store). An unloaded
        series reads ClickHouse when first asked, and older bars are read there anyway.
        """
        self._history[key] = self._history.get(key, 0) + 1
        series = self._series.get(key)
        if series is None or series.complete_from is None:
            return
        for row in stored:
            if row.ts_ms < series.complete_from:
                continue
            i = bisect_left(series.ts, row.ts_ms)
            if i == len(series.ts) or series.ts[i] != row.ts_ms:
                series.ts.insert(i, row.ts_ms)
                series.rows.insert(i, row)
        series.trim(self.capacity)

    def get(self, key: SeriesKey, *, start_ms: int | None, end_ms: int | None, limit: int) -> list[BarRow] | None:
        """The answer from memory, or None when memory cannot answer exactly."""
        series = self._series.get(key)
        if not self.caught_up or series is None or series.complete_from is None:
            return None
        first_complete = 0 if series.complete_from == ALL_HISTORY else bisect_left(series.ts, series.complete_from)
        hi = len(series.ts) if end_ms is None else bisect_right(series.ts, end_ms)
        if start_ms is not None:
            if series.complete_from != ALL_HISTORY and start_ms < series.complete_from:
                return None
            lo = max(bisect_left(series.ts, start_ms), first_complete)
            return series.rows[lo : min(hi, lo + limit)]
        lo = hi - limit
        if lo < first_complete:
            if series.complete_from != ALL_HISTORY:
                return None
            lo = max(lo, 0)
        return series.rows[lo:hi]


__all__ = ["ALL_HISTORY", "BarCache"]
