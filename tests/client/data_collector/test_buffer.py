"""The collector's SQLite buffer: one owning thread, states, the cap, the old schema, purging."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from client.data_collector.buffer import BufferFull, Receipt, Refusal, TickBuffer, TickStore
from client.data_collector.sources import ConnectorSource
from tests.support import ServedApp

T0_MS = 1_767_225_600_000


def ticks(symbol: str, n: int, start_ms: int = T0_MS) -> list[dict[str, Any]]:
    return [
        {"symbol": symbol, "time_msc": start_ms + i, "bid": f"1.{1000 + i}", "ask": f"1.{1002 + i}"} for i in range(n)
    ]


async def open_buffer(path: Path, *, max_ticks: int = 1000, clock=None) -> TickBuffer:
    options = {"clock": clock} if clock else {}
    return await TickBuffer.open(path / "buffer.sqlite3", gap_threshold_ms=120_000, max_ticks=max_ticks, **options)


async def test_every_call_runs_on_the_one_thread_that_owns_the_connection(tmp_path):
    buffer = await open_buffer(tmp_path)
    try:

        def where(store: TickStore) -> int:
            store.counts()
            return threading.get_ident()

        threads = await asyncio.gather(*(buffer.call(where) for _ in range(20)))
        assert len(set(threads)) == 1 and threads[0] != threading.get_ident()
        # SQLite itself refuses the connection anywhere else: nothing can share it by mistake.
        store = await buffer.call(lambda s: s)
        with pytest.raises(sqlite3.ProgrammingError, match="thread"):
            store.counts()
    finally:
        await buffer.close()


async def test_concurrent_sources_and_delivery_keep_every_tick_once(tmp_path):
    buffer = await open_buffer(tmp_path, max_ticks=100_000)
    try:
        symbols = [f"SYM{i}" for i in range(8)]

        async def source(symbol: str) -> None:
            for chunk in range(10):
                await buffer.call(TickStore.add_with_cursor, ticks(symbol, 50, T0_MS + chunk * 50), symbol, chunk)

        async def deliver() -> int:
            sent = 0
            for _ in range(200):
                batch = await buffer.call(TickStore.pending, 37)
                await buffer.call(TickStore.record_outcome, batch.seqs, Receipt("e", {0: sent}), [], {}, [])
                sent += len(batch.seqs)
                await asyncio.sleep(0)
            return sent

        results = await asyncio.gather(*(source(s) for s in symbols), deliver())
        counts = await buffer.call(TickStore.counts)
        assert counts.pending + counts.sent == 8 * 500 and counts.sent == results[-1]
        assert [await buffer.call(TickStore.cursor, s) for s in symbols] == [9] * 8
    finally:
        await buffer.close()


async def test_a_full_buffer_takes_nothing_and_moves_no_cursor(tmp_path):
    buffer = await open_buffer(tmp_path, max_ticks=100)
    try:
        assert await buffer.call(TickStore.add_with_cursor, ticks("EURUSD", 100), "mt5:EURUSD", 1) == 100
        with pytest.raises(BufferFull):
            await buffer.call(TickStore.add_with_cursor, ticks("EURUSD", 5, T0_MS + 1000), "mt5:EURUSD", 2)
        assert await buffer.call(TickStore.cursor, "mt5:EURUSD") == 1
        assert await buffer.call(TickStore.full)
        # Confirmed ticks make room; quarantined ones are not what the cap bounds.
        batch = await buffer.call(TickStore.pending, 60)
        refused = [Refusal(s, "crossed_quote", "ask < bid") for s in batch.seqs[:10]]
        await buffer.call(TickStore.record_outcome, batch.seqs[10:], Receipt("e", {0: 49}), [], {}, refused)
        receipts = await buffer.call(TickStore.receipts)
        await buffer.call(TickStore.settle, [r.id for r in receipts], [])
        assert await buffer.call(TickStore.add, ticks("EURUSD", 5, T0_MS + 1000)) == 5
    finally:
        await buffer.close()


async def test_the_connector_cursor_stays_while_the_buffer_is_full(tmp_path):
    async def mt5_ticks(request: Request) -> JSONResponse:
        start = int(request.query_params["from_msc"])
        return JSONResponse(ticks(request.query_params["symbol"], 20, start + 1))

    buffer = await open_buffer(tmp_path, max_ticks=20)
    try:
        app = Starlette(routes=[Route("/api/v1/mt5/ticks", mt5_ticks)])
        async with ServedApp(app) as mt5, httpx.AsyncClient() as http:
            source = ConnectorSource(http, mt5.base_url, ("EURUSD",), buffer, backfill_s=0)
            await buffer.call(TickStore.add_with_cursor, [], "mt5:EURUSD", T0_MS)
            assert await source.poll() == 20
            cursor = await buffer.call(TickStore.cursor, "mt5:EURUSD")
            assert await source.poll() == 0  # full: the terminal keeps them
            assert await buffer.call(TickStore.cursor, "mt5:EURUSD") == cursor
    finally:
        await buffer.close()


async def test_only_confirmed_ticks_are_purged_and_only_after_the_dedupe_window(tmp_path):
    now = [1000.0]
    buffer = await open_buffer(tmp_path, clock=lambda: now[0])
    try:
        await buffer.call(TickStore.add, ticks("EURUSD", 30))
        batch = await buffer.call(TickStore.pending, 20)
        await buffer.call(TickStore.record_outcome, batch.seqs[:10], Receipt("e1", {0: 9}), [], {}, [])
        await buffer.call(TickStore.record_outcome, batch.seqs[10:], Receipt("e1", {0: 19}), [], {}, [])
        [first, _still_sent] = await buffer.call(TickStore.receipts)
        await buffer.call(TickStore.settle, [first.id], [])
        now[0] += 3599
        assert await buffer.call(TickStore.purge_confirmed, 3600) == 0
        assert await buffer.call(TickStore.add, ticks("EURUSD", 30)) == 0  # still remembered: duplicates
        now[0] += 2
        assert await buffer.call(TickStore.purge_confirmed, 3600) == 10
        counts = await buffer.call(TickStore.counts)
        assert (counts.pending, counts.sent, counts.confirmed) == (10, 10, 0)
    finally:
        await buffer.close()


async def test_a_lost_receipt_puts_its_ticks_back_first_in_line(tmp_path):
    buffer = await open_buffer(tmp_path)
    try:
        await buffer.call(TickStore.add, ticks("EURUSD", 30))
        first = await buffer.call(TickStore.pending, 10)
        await buffer.call(TickStore.record_outcome, first.seqs, Receipt("old", {0: 9}), [], {}, [])
        [receipt] = await buffer.call(TickStore.receipts)
        await buffer.call(TickStore.settle, [], [receipt.id])
        again = await buffer.call(TickStore.pending, 10)
        assert again.seqs == first.seqs and await buffer.call(TickStore.receipts) == []
    finally:
        await buffer.close()


async def test_a_buffer_of_the_previous_version_sends_its_delivered_ticks_again(tmp_path):
    db = sqlite3.connect(tmp_path / "buffer.sqlite3")
    db.executescript(
        """
        CREATE TABLE ticks (seq INTEGER PRIMARY KEY AUTOINCREMENT, dedupe_key TEXT NOT NULL UNIQUE,
            symbol TEXT NOT NULL, time_msc INTEGER NOT NULL, payload BLOB NOT NULL,
            delivered INTEGER NOT NULL DEFAULT 0, added_at REAL NOT NULL);
        CREATE INDEX ticks_pending ON ticks (delivered, seq);
        CREATE TABLE cursors (source TEXT PRIMARY KEY, position INTEGER NOT NULL);
        INSERT INTO cursors VALUES ('mt5:EURUSD', 42);
        """
    )
    db.execute(
        "INSERT INTO ticks (dedupe_key, symbol, time_msc, payload, delivered, added_at) VALUES "
        "('a', 'EURUSD', 1, '{\"symbol\": \"EURUSD\", \"time_msc\": 1}', 1, 0), "
        "('b', 'EURUSD', 2, '{\"symbol\": \"EURUSD\", \"time_msc\": 2}', 0, 0)"
    )
    db.commit()
    db.close()
    buffer = await open_buffer(tmp_path)
    try:
        batch = await buffer.call(TickStore.pending, 10)
        assert [t["time_msc"] for t in batch.ticks] == [1, 2]  # a 202 alone confirmed nothing: sent again
        assert await buffer.call(TickStore.cursor, "mt5:EURUSD") == 42
    finally:
        await buffer.close()
    reopened = await open_buffer(tmp_path)  # and the migration runs once
    try:
        assert (await reopened.call(TickStore.counts)).pending == 2
    finally:
        await reopened.close()
