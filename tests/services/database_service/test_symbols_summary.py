"""``GET /api/v1/market/symbols`` reads summaries kept on insert, never the stored ticks.

Proved with ClickHouse's own counter of rows read (``system.events``/``SelectedRows``),
not with timing: the read must not grow with the history.
"""

from __future__ import annotations

import shutil
from decimal import Decimal

import pytest

from services.database_service.repository import MarketRepository
from shared.clickhouse import ChdbClickHouse
from shared.events import MarketBar, MarketTick, Timeframe
from shared.kit.migrations import migrate_clickhouse
from tests.services.database_service.conftest import MIGRATIONS

SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY")
START_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
#: Rows the counter query itself and the summaries may read; the history here is 100x that.
READ_BOUND = 1_000


def ticks(symbol: str, first: int, n: int) -> list[MarketTick]:
    return [
        MarketTick(
            event_id=f"00000000-0000-4000-8000-{SYMBOLS.index(symbol):04d}{first + i:08d}",
            ts_event=START_NS + (first + i) * 1_000_000_000,
            ts_init=START_NS,
            symbol=symbol,
            bid=Decimal("1.1"),
            ask=Decimal("1.2"),
        )
        for i in range(n)
    ]


def bar(symbol: str, timeframe: Timeframe) -> MarketBar:
    one = Decimal("1.1")
    return MarketBar(
        event_id=f"00000000-0000-4000-9000-{SYMBOLS.index(symbol):012d}",
        ts_event=START_NS,
        ts_init=START_NS,
        symbol=symbol,
        timeframe=timeframe,
        open=one,
        high=one,
        low=one,
        close=one,
        volume=1,
    )


async def store_history(repo: MarketRepository, first: int, per_symbol: int, batch: int = 2_000) -> None:
    for symbol in SYMBOLS:
        for start in range(first, first + per_symbol, batch):
            await repo.insert_ticks(ticks(symbol, start, batch))


async def selected_rows(repo: MarketRepository) -> int:
    rows = await repo.ch.rows("SELECT value FROM system.events WHERE event = 'SelectedRows'")
    return int(rows[0][0]) if rows else 0


async def symbols_and_rows_read(repo: MarketRepository) -> tuple[list[dict], int]:
    before = await selected_rows(repo)
    answer = await repo.symbols()
    return answer, await selected_rows(repo) - before


@pytest.fixture
def chdb(tmp_path):
    ch = ChdbClickHouse(tmp_path / "chdb")
    yield ch
    ch.close()


async def test_symbols_reads_a_summary_that_does_not_grow_with_history(chdb) -> None:
    await migrate_clickhouse(chdb, "database-service", MIGRATIONS)
    repo = MarketRepository(chdb)
    await store_history(repo, 0, 20_000)
    await repo.insert_bars([bar("EURUSD", Timeframe.H1), bar("EURUSD", Timeframe.M1), bar("GBPUSD", Timeframe.M5)])

    answer, read = await symbols_and_rows_read(repo)
    assert read < READ_BOUND
    assert answer[0] == {
        "symbol": "EURUSD",
        "ticks": 20_000,
        "first_tick_ms": START_NS // 1_000_000,
        "last_tick_ms": START_NS // 1_000_000 + 19_999_000,
        "timeframes": ["M1", "H1"],
    }
    assert [(s["symbol"], s["ticks"], s["timeframes"]) for s in answer[1:]] == [
        ("GBPUSD", 20_000, ["M5"]),
        ("USDJPY", 20_000, []),
    ]

    await store_history(repo, 20_000, 20_000)  # twice the history: the read stays the same size
    answer, read_after = await symbols_and_rows_read(repo)
    assert read_after < READ_BOUND
    assert [s["ticks"] for s in answer] == [40_000] * 3
    assert answer[0]["last_tick_ms"] == START_NS // 1_000_000 + 39_999_000


async def test_the_migration_backfills_what_was_stored_before_it(chdb, tmp_path) -> None:
    only_first = tmp_path / "first"
    only_first.mkdir()
    shutil.copy(MIGRATIONS / "001_market.sql", only_first)
    await migrate_clickhouse(chdb, "database-service", only_first)
    repo = MarketRepository(chdb)
    await store_history(repo, 0, 4_000)
    await repo.insert_ticks(ticks("EURUSD", 0, 2_000))  # a redelivery: one copy to readers
    await repo.insert_bars([bar("USDJPY", Timeframe.M15)])

    assert await migrate_clickhouse(chdb, "database-service", MIGRATIONS) == [
        "database-service/002_bar_real_volume_sum",
        "database-service/003_market_summaries",
        "database-service/004_refused_events",
    ]
    answer = await repo.symbols()
    assert [(s["symbol"], s["ticks"], s["timeframes"]) for s in answer] == [
        ("EURUSD", 4_000, []),
        ("GBPUSD", 4_000, []),
        ("USDJPY", 4_000, ["M15"]),
    ]


async def test_stored_ticks_are_listed_once_each_even_when_stored_twice(chdb) -> None:
    await migrate_clickhouse(chdb, "database-service", MIGRATIONS)
    repo = MarketRepository(chdb)
    sent = ticks("GBPUSD", 0, 50)
    await repo.insert_ticks(sent)
    await repo.insert_ticks(sent[10:20])  # a redelivery that reached storage: two rows, one tick
    start_ms = START_NS // 1_000_000
    listed = await repo.ticks("GBPUSD", start_ms=start_ms, end_ms=None, limit=1000)
    assert [t["event_id"] for t in listed] == [str(t.event_id) for t in sent]
    assert [t["time_msc"] for t in listed] == [t.ts_event // 1_000_000 for t in sent]
    window = await repo.ticks("GBPUSD", start_ms=start_ms + 5_000, end_ms=start_ms + 15_000, limit=1000)
    assert [t["time_msc"] - start_ms for t in window] == list(range(5_000, 15_000, 1_000))
    assert len(await repo.ticks("GBPUSD", start_ms=start_ms, end_ms=None, limit=7)) == 7
