"""End-to-end delivery, collector side: the forwarder and the confirmation loop against a faithful server.

Real pieces: the SQLite buffer on disk, the HTTP client with its token flow, HTTP to a
server that judges ticks with data-bridge's own validator (``fake_server.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from client.data_collector.buffer import TickBuffer, TickStore
from client.data_collector.confirmation import Confirmer
from client.data_collector.forwarder import Forwarder
from client.server_client import ServerClient
from shared.auth.client import ClientCredentials
from tests.client.data_collector.fake_server import CLIENT_ID, SECRET, FakeServer
from tests.support import eventually

#: 2026-01-01T00:00:00Z: tick times are fixed, the server's clock is set to match them.
T0_MS = 1_767_225_600_000


def ticks(symbol: str, n: int, *, start_ms: int = T0_MS, step_ms: int = 100) -> list[dict[str, Any]]:
    return [
        {"symbol": symbol, "time_msc": start_ms + i * step_ms, "bid": f"1.{1000 + i}", "ask": f"1.{1002 + i}"}
        for i in range(n)
    ]


@dataclass
class Collector:
    buffer: TickBuffer
    server: ServerClient
    forwarder: Forwarder
    confirmer: Confirmer

    async def add(self, batch: list[dict[str, Any]]) -> None:
        await self.buffer.call(TickStore.add, batch)
        self.forwarder.wake.set()

    async def counts(self) -> Any:
        return await self.buffer.call(TickStore.counts)


@contextlib.asynccontextmanager
async def running_collector(
    fake: FakeServer, tmp_path: Path, *, batch_size: int = 50, confirm_interval_s: float = 0.05
) -> AsyncIterator[Collector]:
    buffer = await TickBuffer.open(tmp_path / "buffer.sqlite3", gap_threshold_ms=120_000, max_ticks=100_000)
    async with httpx.AsyncClient(timeout=5) as http:
        server = ServerClient(
            fake.url, fake.url + "/oauth2/token", ClientCredentials(CLIENT_ID, SECRET), tmp_path / "none.json", http
        )
        forwarder = Forwarder(server, buffer, batch_size=batch_size, retry_first_s=0.05, retry_max_s=0.2)
        confirmer = Confirmer(server, buffer, forwarder, interval_s=confirm_interval_s)
        tasks = [asyncio.create_task(forwarder.run()), asyncio.create_task(confirmer.run())]
        try:
            yield Collector(buffer, server, forwarder, confirmer)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await buffer.close()


def server_at_tick_time() -> float:
    """The server's clock: just after the test's ticks were made."""
    return T0_MS / 1000 + 5


async def test_sent_ticks_are_kept_until_the_server_confirms_them(tmp_path):
    async with FakeServer(clock=server_at_tick_time) as fake, running_collector(fake, tmp_path) as collector:
        fake.handled = dict.fromkeys(range(4), 0)  # the consumers have not handled anything yet
        await collector.add(ticks("EURUSD", 120))
        await eventually(lambda: _counts_are(collector, sent=120))
        await asyncio.sleep(0.3)  # several /progress polls: still nothing confirmed
        assert (await collector.counts()).sent == 120
        assert await collector.buffer.call(TickStore.purge_confirmed, 0) == 0  # never forgets a sent tick
        fake.handled = None  # the consumers caught up
        await eventually(lambda: _counts_are(collector, confirmed=120))
    assert [t["time_msc"] for t in fake.logged()] == [t["time_msc"] for t in ticks("EURUSD", 120)]


async def test_ticks_sent_to_a_lost_broker_log_are_sent_again_in_order(tmp_path):
    async with FakeServer(clock=server_at_tick_time) as fake, running_collector(fake, tmp_path) as collector:
        fake.handled = dict.fromkeys(range(4), 0)
        first = ticks("EURUSD", 80) + ticks("GBPUSD", 80)
        await collector.add(first)
        await eventually(lambda: _counts_are(collector, sent=160))
        fake.lose_log()  # the broker restarted empty before the consumers handled anything
        fake.handled = None
        await eventually(lambda: _counts_are(collector, confirmed=160))
        assert collector.confirmer.lost_receipts > 0
    expected = sorted((t["symbol"], t["time_msc"]) for t in first)
    assert sorted((t["symbol"], t["time_msc"]) for t in fake.logged()) == expected  # all of them, in the new log
    for symbol in ("EURUSD", "GBPUSD"):  # and each symbol in its order
        times = [t["time_msc"] for t in fake.logged() if t["symbol"] == symbol]
        assert times == sorted(times)


async def test_after_a_broker_restart_the_lost_ticks_reach_the_new_log_before_newer_ones(tmp_path):
    # The confirmation loop is slow here: the forwarder learns of the new log from the 409
    # its next request gets (it names the epoch of its unconfirmed ticks), not from /progress.
    async with (
        FakeServer(clock=server_at_tick_time) as fake,
        running_collector(fake, tmp_path, confirm_interval_s=60) as collector,
    ):
        fake.handled = dict.fromkeys(range(4), 0)
        old = ticks("EURUSD", 60)
        await collector.add(old)
        await eventually(lambda: _counts_are(collector, sent=60))
        fake.lose_log()
        new = ticks("EURUSD", 40, start_ms=T0_MS + 60 * 100)
        await collector.add(new)
        await eventually(lambda: _counts_are(collector, sent=100))
        assert 409 in fake.ingest_statuses
    # Nothing of the newer ticks went ahead of the lost ones: the bar stage sees them in order.
    assert [t["time_msc"] for t in fake.logged()] == [t["time_msc"] for t in old + new]


async def test_progress_is_asked_only_while_something_is_unconfirmed(tmp_path):
    async with FakeServer(clock=server_at_tick_time) as fake, running_collector(fake, tmp_path) as collector:
        await collector.add(ticks("EURUSD", 10))
        await eventually(lambda: _counts_are(collector, confirmed=10))
        asked = fake.progress_requests
        await asyncio.sleep(0.5)  # ten poll intervals with nothing to confirm
        assert fake.progress_requests == asked


async def test_ticks_refused_for_good_are_quarantined_and_the_rest_delivered(tmp_path):
    good = ticks("EURUSD", 30)
    crossed = {"symbol": "EURUSD", "time_msc": T0_MS + 50, "bid": "1.2000", "ask": "1.1000"}
    async with FakeServer(clock=server_at_tick_time) as fake, running_collector(fake, tmp_path) as collector:
        await collector.add([crossed, *good])
        await eventually(lambda: _counts_are(collector, confirmed=30, quarantined=1))
        [kept] = await collector.buffer.call(TickStore.quarantined)
    assert kept["tick"] == crossed and kept["reason"] == "crossed_quote" and "ask" in kept["detail"]
    assert len(fake.accepted) == 30


async def test_a_tick_that_makes_the_server_refuse_the_whole_request_blocks_nothing_behind_it(tmp_path):
    bad = {"symbol": "EURUSD", "time_msc": T0_MS + 1, "bid": "1.1", "ask": "1.1", "flags": 7}
    async with FakeServer(clock=server_at_tick_time) as fake, running_collector(fake, tmp_path) as collector:
        fake.refuse_request_with = lambda tick: tick.get("flags") == 7
        await collector.add([bad, *ticks("EURUSD", 99, start_ms=T0_MS + 1000)])
        await eventually(lambda: _counts_are(collector, confirmed=99, quarantined=1))
        [kept] = await collector.buffer.call(TickStore.quarantined)
    assert kept["tick"]["flags"] == 7 and kept["reason"] == "http_422"
    assert len(fake.accepted) == 99
    assert fake.ingest_statuses.count(422) <= 2 * 7  # found by halving, not tick by tick


async def test_a_batch_larger_than_the_server_takes_is_split_and_the_batch_size_lowered(tmp_path):
    async with (
        FakeServer(clock=server_at_tick_time, max_ticks=20) as fake,
        running_collector(fake, tmp_path, batch_size=50) as collector,
    ):
        await collector.add(ticks("EURUSD", 200))
        await eventually(lambda: _counts_are(collector, confirmed=200))
    assert len(fake.accepted) == 200 and [t["time_msc"] for t in fake.accepted] == sorted(
        t["time_msc"] for t in fake.accepted
    )
    # Learnt while splitting the first batch, not paid again on every batch.
    assert fake.ingest_statuses.count(413) <= 4 and len(fake.ingest_statuses) <= 200 // 12 + 8


@pytest.mark.parametrize("status", [401, 403, 429, 500, 503])
async def test_refusals_that_are_not_the_ticks_fault_are_retried_and_quarantine_nothing(tmp_path, status):
    async with FakeServer(clock=server_at_tick_time) as fake, running_collector(fake, tmp_path) as collector:
        fake.fail_next = [status] * 3
        await collector.add(ticks("EURUSD", 10))
        await eventually(lambda: _counts_are(collector, confirmed=10))
    assert fake.ingest_statuses[:3] == [status] * 3


async def test_a_retry_after_from_the_server_is_honoured(tmp_path):
    async with FakeServer(clock=server_at_tick_time) as fake, running_collector(fake, tmp_path) as collector:
        fake.fail_next, fake.fail_retry_after = [503], "1"
        await collector.add(ticks("EURUSD", 10))
        await eventually(lambda: _counts_are(collector, confirmed=10))
    assert fake.ingest_statuses[:2] == [503, 202]
    assert fake.ingest_times[1] - fake.ingest_times[0] >= 0.95  # not the forwarder's own 0.25 s


async def _counts_are(collector: Collector, **expected: int) -> bool:
    counts = await collector.counts()
    return all(getattr(counts, state) == n for state, n in expected.items())
