"""``GET /api/v1/market/symbols`` reads summaries kept on insert, never the stored ticks, and
its ``ticks`` are ticks: a tick stored again (re-sent, replayed) is not counted again.

Proved with ClickHouse's own counter of rows read (``system.events``/``SelectedRows``),
not with timing: the read must not grow with the history.
"""

from __future__ import annotations

import shutil
from decimal import Decimal

import pytest

from services.database_service.repository import TICK_COLUMNS, MarketRepository, tick_row
from services.database_service.storing import IsolatingStore, StoreOutage
from shared.clickhouse import ChdbClickHouse
from shared.events import MarketBar, MarketTick, Timeframe
from shared.kit.migrations import migrate_clickhouse
from tests.services.database_service.conftest import MIGRATIONS, no_pause

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


async def store_rows(repo: MarketRepository, stored: list[MarketTick]) -> None:
    """Rows straight into ``market.ticks``, as the store did before it checked for stored ticks."""
    await repo.ch.insert("market.ticks", TICK_COLUMNS, [tick_row(t) for t in stored])


async def counted(repo: MarketRepository) -> dict[str, int]:
    return {s["symbol"]: s["ticks"] for s in await repo.symbols()}


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
    for symbol in SYMBOLS:
        await store_rows(repo, ticks(symbol, 0, 4_000))
    await store_rows(repo, ticks("EURUSD", 0, 2_000))  # a redelivery: one copy to readers
    await repo.insert_bars([bar("USDJPY", Timeframe.M15)])

    assert await migrate_clickhouse(chdb, "database-service", MIGRATIONS) == [
        "database-service/002_bar_real_volume_sum",
        "database-service/003_market_summaries",
        "database-service/004_refused_events",
        "database-service/005_exact_tick_counts",
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
    await store_rows(repo, sent)
    await store_rows(repo, sent[10:20])  # a redelivery that reached storage: two rows, one tick
    start_ms = START_NS // 1_000_000
    listed = await repo.ticks("GBPUSD", start_ms=start_ms, end_ms=None, limit=1000)
    assert [t["event_id"] for t in listed] == [str(t.event_id) for t in sent]
    assert [t["time_msc"] for t in listed] == [t.ts_event // 1_000_000 for t in sent]
    window = await repo.ticks("GBPUSD", start_ms=start_ms + 5_000, end_ms=start_ms + 15_000, limit=1000)
    assert [t["time_msc"] - start_ms for t in window] == list(range(5_000, 15_000, 1_000))
    assert len(await repo.ticks("GBPUSD", start_ms=start_ms, end_ms=None, limit=7)) == 7


async def test_a_tick_stored_again_is_not_counted_again(chdb) -> None:
    await migrate_clickhouse(chdb, "database-service", MIGRATIONS)
    repo = MarketRepository(chdb)
    sent = ticks("EURUSD", 0, 50)
    await repo.insert_ticks(sent)
    await repo.insert_ticks(sent[10:20])  # re-sent after a broker restart: all of it stored already
    await repo.insert_ticks([*sent[40:], *ticks("EURUSD", 50, 10), sent[45]])  # old, new, and one twice
    await repo.insert_ticks(ticks("GBPUSD", 0, 5) + sent[:5])  # another symbol's new ticks beside old ones

    assert await counted(repo) == {"EURUSD": 60, "GBPUSD": 5}
    rows = await repo.ch.rows("SELECT symbol, count() FROM market.ticks WHERE rewrite = 0 GROUP BY symbol")
    assert dict(rows) == {"EURUSD": 60, "GBPUSD": 5}  # one row per tick: no copy waits for a merge
    answer = (await repo.symbols())[0]
    assert (answer["first_tick_ms"], answer["last_tick_ms"]) == (START_NS // 1_000_000, START_NS // 1_000_000 + 59_000)


async def test_the_stores_control_writes_are_not_counted(chdb) -> None:
    """The isolating store writes a stored tick again to learn whether the store works (``storing.py``)."""
    await migrate_clickhouse(chdb, "database-service", MIGRATIONS)
    repo = MarketRepository(chdb)
    await chdb.execute("ALTER TABLE market.ticks ADD CONSTRAINT no_poison CHECK bid != 1.3")
    store = IsolatingStore(repo.insert_ticks, sleep=no_pause)
    batch = ticks("EURUSD", 0, 64)
    poisoned = {5, 33, 60}
    for i in poisoned:
        batch[i] = batch[i].model_copy(update={"bid": Decimal("1.3"), "ask": Decimal("1.4")})
    assert await store.store([(i, t) for i, t in enumerate(batch[:2])]) == []
    refused = await store.store([(i, t) for i, t in enumerate(batch)])
    assert sorted(r.item for r in refused) == sorted(poisoned)
    assert await counted(repo) == {"EURUSD": 64 - len(poisoned)}


async def test_a_store_that_takes_no_write_is_an_outage_even_for_stored_ticks(chdb) -> None:
    """The control write of an already stored tick still writes: a store that reads but refuses
    every write is an outage, not 64 refused ticks."""
    await migrate_clickhouse(chdb, "database-service", MIGRATIONS)
    repo = MarketRepository(chdb)
    store = IsolatingStore(repo.insert_ticks, sleep=no_pause)
    assert await store.store([(i, t) for i, t in enumerate(ticks("EURUSD", 0, 8))]) == []
    await chdb.execute("ALTER TABLE market.ticks ADD CONSTRAINT read_only CHECK bid < 0")
    with pytest.raises(StoreOutage):
        await store.store([(i, t) for i, t in enumerate(ticks("EURUSD", 8, 64))])
    assert await counted(repo) == {"EURUSD": 8}


async def test_checking_for_stored_ticks_reads_the_re_sent_span_not_the_history(chdb) -> None:
    await migrate_clickhouse(chdb, "database-service", MIGRATIONS)
    repo = MarketRepository(chdb)
    await store_history(repo, 0, 60_000)

    async def rows_read(insert, batch: list[MarketTick]) -> int:
        before = await selected_rows(repo)
        await insert(batch)
        return await selected_rows(repo) - before

    # The insert itself reads its block (the materialized views): the same batch size, unchecked, is the base.
    base = await rows_read(lambda b: store_rows(repo, b), [t for s in SYMBOLS for t in ticks(s, 60_000, 2_000)])
    live = await rows_read(repo.insert_ticks, [t for s in SYMBOLS for t in ticks(s, 62_000, 2_000)])  # past the newest
    assert live - base < READ_BOUND

    re_sent = await rows_read(repo.insert_ticks, ticks("GBPUSD", 30_000, 2_000))  # from the middle of the history
    # The granules (8,192 rows) the span touches, at most three, where the symbol has 64,000 rows.
    assert re_sent < 3 * 8_192 + READ_BOUND
    assert await counted(repo) == dict.fromkeys(SYMBOLS, 64_000)


async def test_the_migration_counts_again_what_the_old_view_counted_twice(chdb, tmp_path) -> None:
    before = tmp_path / "before"
    before.mkdir()
    for migration in sorted(MIGRATIONS.glob("00[1-4]_*.sql")):
        shutil.copy(migration, before)
    await migrate_clickhouse(chdb, "database-service", before)
    repo = MarketRepository(chdb)
    await store_rows(repo, ticks("EURUSD", 0, 100))
    await store_rows(repo, ticks("EURUSD", 50, 20))  # stored again: the view of migration 003 counts 120
    assert await counted(repo) == {"EURUSD": 120}

    assert await migrate_clickhouse(chdb, "database-service", MIGRATIONS) == ["database-service/005_exact_tick_counts"]
    assert await counted(repo) == {"EURUSD": 100}
    await repo.insert_ticks(ticks("EURUSD", 90, 20))  # 10 stored, 10 new
    assert await counted(repo) == {"EURUSD": 110}


class CountingReads:
    """``ch.rows`` with a count of the reads of ``tick_summary``."""

    def __init__(self, ch: ChdbClickHouse) -> None:
        self.ch, self.summary_reads = ch, 0

    def __getattr__(self, name: str):
        return getattr(self.ch, name)

    async def rows(self, query: str, *args, **kwargs):
        self.summary_reads += "market.tick_summary" in query
        return await self.ch.rows(query, *args, **kwargs)


async def test_a_live_stream_reads_the_newest_stored_time_once_not_per_batch(chdb) -> None:
    await migrate_clickhouse(chdb, "database-service", MIGRATIONS)
    reads = CountingReads(chdb)
    repo = MarketRepository(reads)  # type: ignore[arg-type]
    for start in range(0, 200, 10):
        await repo.insert_ticks(ticks("EURUSD", start, 10))
    assert reads.summary_reads == 1
    assert await counted(repo) == {"EURUSD": 200}


async def test_after_a_rebalance_ticks_another_writer_stored_meanwhile_are_not_stored_again(chdb) -> None:
    await migrate_clickhouse(chdb, "database-service", MIGRATIONS)
    mine, other = MarketRepository(chdb), MarketRepository(chdb)
    await mine.insert_ticks(ticks("EURUSD", 0, 10))
    await other.insert_ticks(ticks("EURUSD", 10, 10))  # the partition had moved to another instance
    mine.forget_newest()  # ... and back: the consumer's rebalance listener (NewWriters)
    await mine.insert_ticks(ticks("EURUSD", 10, 20))  # the other's ticks again, and ten new ones
    assert await counted(mine) == {"EURUSD": 30}
