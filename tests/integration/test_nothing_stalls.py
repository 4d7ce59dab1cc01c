"""Faults that used to stall market data, on real embedded infrastructure: nothing lost, nothing doubled.

* An event the store refuses (a ClickHouse constraint on one marker tick): database-service
  dead-letters exactly it and stores everything after it within seconds. It runs the real
  consumers in process, on the session's broker and a chdb of its own (the test must change
  that store's table), under consumer groups of its own beside any running mesh.
* A store outage (the table detached under the same consumers): nothing dead-lettered,
  everything stored once the store is back.
* A tick the store could not hold is refused at the edge, with its reason in the 202.
* A tick 50 s ahead of a steady stream, through the mesh: every steady tick is in the bars,
  which equal the reference computation over the stored ticks.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from prometheus_client import CollectorRegistry

from services.data_bridge.domain.bars import bars_from_ticks
from services.database_service import consumers
from services.database_service.cache import BarCache
from services.database_service.repository import MarketRepository
from services.database_service.settings import DatabaseServiceSettings
from shared import topics
from shared.bus import deadletter
from shared.bus.broker import create_broker
from shared.clickhouse import ChdbClickHouse
from shared.events import MarketBar, MarketTick, Timeframe, encode_event, tick_event_id
from shared.kit.bus import ServiceBus
from shared.kit.contract import Consumes, Contract, ContractUse
from shared.kit.migrations import migrate_clickhouse
from tests.integration.test_market_path import bars, ingest, stored_ticks
from tests.support import eventually, quote_tick

pytestmark = pytest.mark.slow

MIGRATIONS = Path(__file__).parents[2] / "services" / "database_service" / "migrations" / "clickhouse"
BASE_MS = 1_767_225_600_000
POISON_BID = Decimal("7.77777")


async def stored_counts(ch: ChdbClickHouse, symbol: str) -> tuple[int, int]:
    """Rows as readers see them (FINAL) and distinct ids: equal when no event is stored twice.

    Rows physically inserted may be more: the control write re-inserts a stored row, which
    ``ReplacingMergeTree`` folds into one (as it does a redelivery).
    """
    final = await ch.rows(f"SELECT count() FROM market.ticks FINAL WHERE symbol = '{symbol}'")
    ids = await ch.rows(f"SELECT uniqExact(event_id) FROM market.ticks WHERE symbol = '{symbol}'")
    return int(final[0][0]), int(ids[0][0])


class OwnConsumers:
    """database-service's real storing consumers under groups of their own, on a chdb of their own."""

    def __init__(self, servers: str, ch: ChdbClickHouse, ticks_group: str) -> None:
        self.servers, self.ch, self.ticks_group = servers, ch, ticks_group

    async def letters(self, dead: AIOKafkaConsumer, keys: tuple[bytes, ...]) -> list[ConsumerRecord]:
        """Dead letters of this group about ``keys`` (the topic also holds other tests' events)."""
        found: list[ConsumerRecord] = []
        for records in (await dead.getmany(timeout_ms=500)).values():
            found.extend(
                r
                for r in records
                if (deadletter.CONSUMER_GROUP, self.ticks_group.encode()) in r.headers and r.key in keys
            )
        return found


@pytest.fixture
async def own_consumers(infra_env, tmp_path):
    _, _, platform = infra_env
    run = uuid.uuid4().hex[:8]
    ticks_group, bars_group = f"test-stall-{run}.ticks", f"test-stall-{run}.bars"
    contract = Contract(
        consumes=(
            Consumes(MarketTick, group=ticks_group),
            Consumes(MarketBar, group=bars_group),
            Consumes(MarketBar, group=None),
        )
    )
    registry = CollectorRegistry()
    bus = ServiceBus(
        create_broker(f"test-stall-{run}", platform.kafka_servers, registry),
        ContractUse("database-service", contract),
        registry,
    )
    ch = ChdbClickHouse(tmp_path / "chdb")
    await migrate_clickhouse(ch, "database-service", MIGRATIONS)
    consumers.subscribe(
        bus,
        registry,
        MarketRepository(ch),
        BarCache(100),
        DatabaseServiceSettings(),
        ticks_group=ticks_group,
        bars_group=bars_group,
    )
    await bus.start()
    try:
        yield OwnConsumers(platform.kafka_servers, ch, ticks_group)
    finally:
        await bus.stop()
        ch.close()


@pytest.fixture
async def dead(own_consumers):
    consumer = AIOKafkaConsumer(
        topics.DEAD_LETTERS, bootstrap_servers=own_consumers.servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    yield consumer
    await consumer.stop()


@pytest.fixture
async def producer(own_consumers):
    producer = AIOKafkaProducer(bootstrap_servers=own_consumers.servers)
    await producer.start()
    yield producer
    await producer.stop()


async def send(producer: AIOKafkaProducer, ticks: list[MarketTick]) -> None:
    for t in ticks:
        await producer.send(topics.MARKET_TICKS, encode_event(t), key=t.symbol.encode())
    await producer.flush()


async def test_an_event_the_store_refuses_is_dead_lettered_and_what_follows_is_stored(own_consumers, dead, producer):
    ch = own_consumers.ch
    # The real store refuses one valid tick, as it would a value nobody foresaw.
    await ch.execute(
        "ALTER TABLE market.ticks ADD CONSTRAINT test_refuses_marker "
        f"CHECK NOT (symbol = 'TSTPOISON' AND bid = {POISON_BID})"
    )
    poison = quote_tick("TSTPOISON", BASE_MS, POISON_BID)
    same_partition = [quote_tick("TSTPOISON", BASE_MS + 1 + i, Decimal("1.1")) for i in range(20)]
    other_symbol = [quote_tick("TSTAFTER", BASE_MS + i, Decimal(110_000 + i % 40).scaleb(-5)) for i in range(1000)]
    await producer.send_and_wait(topics.MARKET_TICKS, encode_event(poison), key=b"TSTPOISON")
    sent_at = time.monotonic()
    await send(producer, [*same_partition, *other_symbol])

    async def all_stored() -> bool:
        counts = (await stored_counts(ch, "TSTAFTER"), await stored_counts(ch, "TSTPOISON"))
        return counts == ((1000, 1000), (20, 20))

    assert await eventually(all_stored, timeout_s=30)
    assert time.monotonic() - sent_at < 15

    keys = (b"TSTPOISON", b"TSTAFTER")
    letters = await eventually(lambda: own_consumers.letters(dead, keys), timeout_s=10)
    letters += await own_consumers.letters(dead, keys)  # and no second one
    letters += await own_consumers.letters(dead, keys)
    assert len(letters) == 1
    letter = letters[0]
    headers = {k: v.decode() for k, v in letter.headers}
    assert letter.value == encode_event(poison) and letter.key == b"TSTPOISON"
    assert headers[deadletter.REASON] == consumers.STORE_REFUSED
    assert "VIOLATED_CONSTRAINT" in headers[deadletter.ERROR]
    assert headers[deadletter.ORIGINAL_TOPIC] == topics.MARKET_TICKS
    # Also kept in ClickHouse: the embedded broker's dead-letter topic ends with the broker.
    kept = await ch.rows("SELECT reason, key, value, error FROM market.refused_events WHERE key = 'TSTPOISON'")
    assert len(kept) == 1 and kept[0][:3] == [consumers.STORE_REFUSED, "TSTPOISON", encode_event(poison).decode()]
    assert "VIOLATED_CONSTRAINT" in kept[0][3]

    # Nothing is lost: once the store takes it, the parked event replays into it, once.
    await ch.execute("ALTER TABLE market.ticks DROP CONSTRAINT test_refuses_marker")
    await producer.send_and_wait(topics.MARKET_TICKS, letter.value, key=letter.key)
    assert await eventually(lambda: _equals(stored_counts(ch, "TSTPOISON"), (21, 21)), timeout_s=15)


async def test_a_store_outage_dead_letters_nothing_and_loses_nothing(own_consumers, dead, producer):
    ch = own_consumers.ch
    before = [quote_tick("TSTBEFORE", BASE_MS + i, Decimal("1.1")) for i in range(10)]
    await send(producer, before)
    assert await eventually(lambda: _equals(stored_counts(ch, "TSTBEFORE"), (10, 10)), timeout_s=30)
    during = [quote_tick("TSTOUTAGE", BASE_MS + i, Decimal(110_000 + i % 40).scaleb(-5)) for i in range(500)]
    await ch.execute("DETACH TABLE market.ticks")  # every insert fails, as with ClickHouse away
    try:
        await send(producer, during)
        await asyncio.sleep(4)  # the outage lasts several retry rounds (not a check: the fault's length)
    finally:
        await ch.execute("ATTACH TABLE market.ticks")
    assert await eventually(lambda: _equals(stored_counts(ch, "TSTOUTAGE"), (500, 500)), timeout_s=30)
    assert await own_consumers.letters(dead, (b"TSTBEFORE", b"TSTOUTAGE")) == []
    assert await own_consumers.letters(dead, (b"TSTBEFORE", b"TSTOUTAGE")) == []


async def _equals(awaitable, value) -> bool:
    return (await awaitable) == value


async def test_a_tick_50_s_ahead_of_a_steady_stream_drops_no_tick_from_the_bars(mesh, http):
    now_ms = time.time_ns() // 1_000_000
    # 1,260 ticks 250 ms apart, the last 25 s ahead of now (the edge allows 60): the outlier below
    # is then ~35 s ahead of the server's clock when it arrives, as from a client clock running ahead.
    start = now_ms - 290_000
    steady = [
        {
            "symbol": "TSTFUTURE",
            "time_msc": start + i * 250,
            "bid": f"1.{10000 + (i * 7) % 90:05d}",
            "ask": f"1.{10010 + (i * 7) % 90:05d}",
            "volume": f"{i % 4}.5",
            "flags": 6,
        }
        for i in range(1260)
    ]
    # After the 1,101st tick, one 50 s ahead of it. Before the fix, the ~40 s of steady ticks after
    # it were dropped as late: whole M1 bars, wherever the minutes fall.
    k = 1100
    outlier = {**steady[k], "time_msc": steady[k]["time_msc"] + 50_000, "bid": "1.20000", "ask": "1.20010"}
    for chunk in (steady[: k + 1], [outlier], steady[k + 1 :]):
        r = await ingest(http, mesh, chunk)
        assert (r.json()["accepted"], r.json()["rejected"]) == (len(chunk), [])
    sent = [*steady, outlier]
    assert await eventually(lambda: _equals(stored_ticks(http, mesh, "TSTFUTURE"), len(sent)))

    # The stored ticks are the sent ones (same deterministic ids, counted above); their reference bars:
    ticks = [
        MarketTick(
            event_id=tick_event_id(
                t["symbol"], t["time_msc"], Decimal(t["bid"]), Decimal(t["ask"]), None, Decimal(t["volume"]), 6
            ),
            ts_event=t["time_msc"] * 1_000_000,
            ts_init=0,
            symbol=t["symbol"],
            bid=Decimal(t["bid"]),
            ask=Decimal(t["ask"]),
            volume=Decimal(t["volume"]),
            flags=6,
        )
        for t in sent
    ]
    watermark = steady[-1]["time_msc"] * 1_000_000 - 2_000_000_000  # the steady stream's, not the outlier's
    expected = [
        {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(b.ts_event // 1_000_000_000)),
            "open": float(b.open),
            "high": float(b.high),
            "low": float(b.low),
            "close": float(b.close),
            "volume": b.volume,
            "real_volume": float(b.real_volume),
        }
        for b in bars_from_ticks(ticks, [Timeframe.M1])
        if b.ts_event + Timeframe.M1.nanos <= watermark
    ]
    assert len(expected) >= 4

    async def closed():
        got = await bars(http, mesh, "TSTFUTURE", "M1", start="2020-01-01T00:00:00Z")
        return got if len(got) >= len(expected) else None

    assert await eventually(closed, timeout_s=30) == expected
    # Every steady tick before the last closed bar's end is in a bar.
    last_end = expected[-1]["ts"]
    in_bars = sum(b["volume"] for b in expected)
    end_ns = (time.mktime(time.strptime(last_end, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone + 60) * 1_000_000_000
    assert in_bars == sum(1 for t in ticks if t.ts_event < end_ns)


async def test_the_edge_refuses_a_tick_the_store_could_not_hold_with_the_reason(mesh, http):
    now_ms = time.time_ns() // 1_000_000
    good = {"symbol": "TSTBOUNDS", "time_msc": now_ms, "bid": "1.1", "ask": "1.1001", "volume": "9999999999.99999999"}
    too_big = {**good, "time_msc": now_ms + 1, "volume": "12345678901.5"}  # the finding's tick
    too_fine = {**good, "time_msc": now_ms + 2, "bid": "1.100000001"}
    r = await http.post(
        mesh.url("data-bridge") + "/api/v1/ingest/ticks", json={"source": "test", "ticks": [good, too_big, too_fine]}
    )
    assert r.status_code == 202
    assert r.json().pop("receipt")["offsets"]  # the one good tick was written
    assert {k: v for k, v in r.json().items() if k != "receipt"} == {
        "accepted": 1,
        "rejected": [
            {
                "index": 1,
                "reason": "malformed",
                "detail": "volume: Decimal input should have no more than 10 digits before the decimal point",
            },
            {
                "index": 2,
                "reason": "malformed",
                "detail": "bid: Decimal input should have no more than 8 decimal places",
            },
        ],
    }
    assert await eventually(lambda: _equals(stored_ticks(http, mesh, "TSTBOUNDS"), 1))
