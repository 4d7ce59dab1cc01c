"""History in the store (``insert_missing_bars``) and in the bars cache (``merge_history``), on a real chdb.

A historical bar is stored only where no bar of its (symbol, timeframe, open time) is, and a
live bar of that minute wins whenever it is stored, even one built before the history was
(database-service's bar consumer lagging behind an import).
"""

from __future__ import annotations

from decimal import Decimal

from services.database_service.cache import BarCache
from services.database_service.repository import BarRow
from shared.bar_history import BarBatch, HistoricalBar, market_bars
from shared.events import MarketBar, Timeframe, bar_event_id

T0 = 1_706_918_400  # 2024-02-03T00:00:00Z
NS = 1_000_000_000


def history(symbol: str, times: list[int], price: str = "1.10000") -> list[MarketBar]:
    bars = [HistoricalBar(time=t, open=price, high=price, low=price, close=price, tick_volume=3) for t in times]
    return market_bars(BarBatch(symbol=symbol, timeframe=Timeframe.M1, bars=bars), ts_init=0)


def live(symbol: str, time: int, price: str, built_ns: int) -> MarketBar:
    p = Decimal(price)
    return MarketBar(
        event_id=bar_event_id(symbol, Timeframe.M1, time * NS),
        ts_event=time * NS,
        ts_init=built_ns,
        symbol=symbol,
        timeframe=Timeframe.M1,
        open=p,
        high=p,
        low=p,
        close=p,
        volume=1,
    )


async def closes(repo, symbol: str) -> dict[int, Decimal]:
    rows = await repo.bars(symbol, Timeframe.M1, start_ms=0, end_ms=None, limit=100)
    return {row.ts_ms // 1000: row.close for row in rows}


async def test_history_fills_only_missing_minutes_and_live_bars_always_win(repo):
    symbol = "TSTHIST"
    await repo.insert_bars([live(symbol, T0 + 60, "2.00000", built_ns=T0 * NS)])
    fresh = await repo.insert_missing_bars(history(symbol, [T0, T0 + 60, T0 + 120]))
    assert [b.ts_event // NS for b in fresh] == [T0, T0 + 120]
    assert await closes(repo, symbol) == {T0: Decimal("1.1"), T0 + 60: Decimal("2"), T0 + 120: Decimal("1.1")}
    assert await repo.insert_missing_bars(history(symbol, [T0, T0 + 60, T0 + 120])) == []
    # A live bar built long before (its ts_init is old) but stored after the history still replaces it.
    await repo.insert_bars([live(symbol, T0 + 120, "3.00000", built_ns=T0 * NS)])
    assert (await closes(repo, symbol))[T0 + 120] == Decimal("3")
    assert (await repo.counts())["bars"]["M1"] >= 3


def test_the_cache_merges_history_inside_its_complete_window_and_keeps_live_bars():
    cache = BarCache(capacity=4)
    cache.caught_up = True
    key = ("TSTHIST", Timeframe.M1)
    row = lambda t, close: BarRow(t * 1000, close, close, close, close, 1, Decimal(0))  # noqa: E731
    cache.load(key, [row(T0 + 60, Decimal(2))])  # all of the series' history: one live bar
    version = cache.history_version(key)
    cache.merge_history(key, [row(T0, Decimal(1)), row(T0 + 60, Decimal(9)), row(T0 + 120, Decimal(1))])
    assert cache.history_version(key) == version + 1
    got = cache.get(key, start_ms=0, end_ms=None, limit=10)
    assert got is not None and [(r.ts_ms // 1000, r.close) for r in got] == [
        (T0, 1),
        (T0 + 60, 2),  # the live bar stays
        (T0 + 120, 1),
    ]
    # Past capacity the oldest go, and the window says it no longer holds all of history.
    cache.merge_history(key, [row(T0 - 120, Decimal(1)), row(T0 - 60, Decimal(1))])
    assert cache.get(key, start_ms=0, end_ms=None, limit=10) is None
    assert [r.ts_ms // 1000 for r in cache.get(key, start_ms=None, end_ms=None, limit=4) or []] == [
        T0 - 60, T0, T0 + 60, T0 + 120,
    ]  # fmt: skip
    # An unloaded series is left alone (it reads ClickHouse when first asked).
    other = ("TSTOTHER", Timeframe.M1)
    cache.merge_history(other, [row(T0, Decimal(1))])
    assert not cache.is_loaded(other)
