"""The bar stage as a stateful handler, in memory: fake records, a fake consumer, publisher and
checkpoints. What must hold: bars are published before the checkpoint that covers their ticks,
a restart or a failed publish resumes from the checkpoint and rebuilds exactly the same bars,
an undecodable tick is dead-lettered and passed, a revoked partition is checkpointed.
(``tests/integration/test_market_path.py`` runs the same stage on the real broker.)"""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from typing import Any, cast

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from prometheus_client import CollectorRegistry

from services.data_bridge import bar_stage
from services.data_bridge.bar_stage import BarStage
from services.data_bridge.domain.bars import BarBuilder
from services.data_bridge.settings import DataBridgeSettings
from shared.events import MarketBar, MarketTick, Timeframe, encode_event, tick_event_id

TOPIC = MarketTick.TOPIC
BASE_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


class Journal(list[str]):
    """What happened, in order, across the fakes."""


class MemoryCheckpoints:
    """Checkpoints kept as PostgreSQL would keep them: the builder's JSON snapshot and the offset."""

    def __init__(self, journal: Journal) -> None:
        self.rows: dict[int, tuple[int, str]] = {}
        self.journal = journal

    async def load(self, partition: int) -> tuple[int, BarBuilder] | None:
        row = self.rows.get(partition)
        return None if row is None else (row[0], BarBuilder.restore(json.loads(row[1])))

    async def save(self, partition: int, next_offset: int, builder: BarBuilder) -> None:
        self.rows[partition] = (next_offset, json.dumps(builder.snapshot()))
        self.journal.append(f"checkpoint p{partition}@{next_offset}")


class Publisher:
    def __init__(self, journal: Journal) -> None:
        self.bars: list[MarketBar] = []
        self.fail_next = False
        self.journal = journal

    async def publish(self, bars: list[MarketBar]) -> None:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("broker away")
        self.bars.extend(bars)
        self.journal.append(f"published {len(bars)}")


class Consumer:
    def __init__(self, journal: Journal) -> None:
        self.positions: dict[TopicPartition, int | str] = {}
        self.committed: dict[TopicPartition, int] = {}
        self.journal = journal

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset
        self.journal.append(f"seek p{tp.partition}@{offset}")

    async def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.positions[tp] = "beginning"
        self.journal.append(f"seek p{tp.partition}@beginning")

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.update(offsets)


class DeadLetters:
    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []

    async def send(self, record: ConsumerRecord, reason: str, error: str) -> None:
        self.sent.append((record.offset, reason))


class Stage:
    """A bar stage wired to fakes sharing one journal (and, across 'restarts', one checkpoint store)."""

    def __init__(self, store: MemoryCheckpoints | None = None, **settings: Any) -> None:
        self.journal = store.journal if store is not None else Journal()
        self.store = store or MemoryCheckpoints(self.journal)
        self.publisher = Publisher(self.journal)
        self.consumer = Consumer(self.journal)
        self.dead_letters = DeadLetters()
        options = {"checkpoint_interval_ms": 0, **settings}
        self.stage = BarStage(
            DataBridgeSettings(**options),
            self.store,
            cast(Any, self.publisher),
            cast(Any, self.dead_letters),
            CollectorRegistry(),
        )
        self.stage.bind(lambda: cast(Any, self.consumer))

    async def assign(self, *partitions: int) -> None:
        await self.stage.on_partitions_assigned([TopicPartition(TOPIC, p) for p in partitions])

    async def handle(self, records: list[ConsumerRecord]) -> None:
        await self.stage.handle(tuple(records), cast(Any, self.consumer))


def tick_record(
    partition: int, offset: int, second: int, bid: str = "1.10000", symbol: str = "EURUSD"
) -> ConsumerRecord:
    ts = BASE_NS + second * 1_000_000_000
    price = Decimal(bid)
    event = MarketTick(
        event_id=tick_event_id(symbol, ts // 1_000_000, price, price + Decimal("0.0001"), None, Decimal(0), 0),
        ts_event=ts,
        ts_init=ts,
        symbol=symbol,
        bid=price,
        ask=price + Decimal("0.0001"),
    )
    return _record(partition, offset, encode_event(event))


def _record(partition: int, offset: int, value: bytes) -> ConsumerRecord:
    return ConsumerRecord(TOPIC, partition, offset, 0, 0, b"EURUSD", value, None, 6, len(value), ())


def ticks(partition: int = 0, count: int = 60, step_s: int = 7) -> list[ConsumerRecord]:
    """One tick every ``step_s`` seconds, prices wandering: several M1 bars, a few M5."""
    return [tick_record(partition, i, i * step_s, bid=f"1.{10000 + (i * 37) % 200:05d}") for i in range(count)]


def keyed(bars: list[MarketBar]) -> dict[tuple[str, Timeframe, int], MarketBar]:
    """Bars by identity; the same bar rebuilt later has the same id and values, only ``ts_init`` differs."""
    return {(b.symbol, b.timeframe, b.ts_event): b.model_copy(update={"ts_init": 0}) for b in bars}


async def uninterrupted(records: list[ConsumerRecord]) -> dict[tuple[str, Timeframe, int], MarketBar]:
    stage = Stage()
    await stage.assign(0)
    await stage.handle(records)
    return keyed(stage.publisher.bars)


@pytest.fixture(autouse=True)
def no_retry_pause(monkeypatch):
    monkeypatch.setattr(bar_stage, "RETRY_PAUSE_S", 0)


async def test_bars_are_published_before_the_checkpoint_that_covers_their_ticks():
    stage = Stage()
    await stage.assign(0)
    await stage.handle(ticks()[:30])
    await stage.handle(ticks()[30:])
    assert stage.publisher.bars and all(b.timeframe in Timeframe for b in stage.publisher.bars)
    assert stage.journal == ["published 3", "checkpoint p0@30", "published 4", "checkpoint p0@60"]
    assert stage.store.rows[0][0] == 60
    assert stage.consumer.committed == {TopicPartition(TOPIC, 0): 60}  # Kafka's offset follows the checkpoint


async def test_a_restart_resumes_from_the_checkpoint_and_rebuilds_the_same_bars():
    records = ticks()
    first = Stage()
    await first.assign(0)
    await first.handle(records[:25])
    # The process dies here: the next ticks were fetched but nothing about them was kept.
    second = Stage(first.store)
    await second.assign(0)
    assert second.consumer.positions == {TopicPartition(TOPIC, 0): 25}
    await second.handle(records[25:])
    assert keyed(first.publisher.bars) | keyed(second.publisher.bars) == await uninterrupted(records)


async def test_a_failed_publish_rewinds_to_the_checkpoint_and_no_bar_is_lost_or_changed():
    records = ticks()
    stage = Stage()
    await stage.assign(0)
    await stage.handle(records[:20])
    stage.publisher.fail_next = True
    await stage.handle(records[20:45])  # the builder took these ticks in, but their bars never left
    assert stage.journal[-1] == "seek p0@20" and stage.store.rows[0][0] == 20
    await stage.handle(records[20:])  # what the consumer reads again from the rewound position
    assert keyed(stage.publisher.bars) == await uninterrupted(records)


async def test_with_no_checkpoint_a_failure_rewinds_to_the_beginning():
    stage = Stage()
    await stage.assign(0)
    stage.publisher.fail_next = True
    await stage.handle(ticks()[:30])
    assert stage.consumer.positions == {TopicPartition(TOPIC, 0): "beginning"}
    assert 0 not in stage.store.rows


async def test_an_undecodable_tick_is_dead_lettered_and_the_partition_goes_on():
    clean = ticks(count=20)
    records = [*clean[:5], _record(0, 5, b'{"not": "a tick"}')]
    records += [dataclasses.replace(r, offset=r.offset + 1) for r in clean[5:]]
    stage = Stage()
    await stage.assign(0)
    await stage.handle(records)
    assert stage.dead_letters.sent == [(5, "malformed")]
    assert stage.store.rows[0][0] == 21  # past the last record, the dead letter included: it is handled
    assert keyed(stage.publisher.bars) == await uninterrupted(clean)


async def test_a_redelivered_batch_makes_no_second_bar():
    records = ticks()
    stage = Stage()
    await stage.assign(0)
    await stage.handle(records[:40])
    await stage.handle(records[30:])  # at-least-once: the tail of the last batch comes again
    published = [(b.timeframe, b.ts_event) for b in stage.publisher.bars]
    assert len(published) == len(set(published))
    assert keyed(stage.publisher.bars) == await uninterrupted(records)


async def test_revoked_partitions_are_checkpointed_and_forgotten_and_close_checkpoints_the_rest():
    stage = Stage(checkpoint_interval_ms=60_000)  # nothing is due on its own during the test
    await stage.assign(0, 1)
    await stage.handle(ticks(0, count=10) + ticks(1, count=5))
    assert stage.store.rows == {}
    await stage.stage.on_partitions_revoked([TopicPartition(TOPIC, 0)])
    assert stage.store.rows[0][0] == 10 and 1 not in stage.store.rows
    await stage.stage.close()
    assert stage.store.rows[1][0] == 5
    before = list(stage.journal)
    await stage.stage.close()  # nothing new since: nothing written
    assert stage.journal == before


async def test_checkpoints_are_written_at_most_once_per_interval():
    stage = Stage(checkpoint_interval_ms=60_000)
    await stage.assign(0)
    await stage.handle(ticks()[:10])
    await stage.handle(ticks()[10:20])
    assert [e for e in stage.journal if e.startswith("checkpoint")] == []


async def test_a_tick_whose_processing_raises_is_dead_lettered_and_the_partition_goes_on(monkeypatch):
    add = BarBuilder.add

    def add_refusing_one_price(self, tick, now_ns):
        if tick.bid == Decimal("1.99999"):
            raise ArithmeticError("a tick nobody foresaw")
        return add(self, tick, now_ns)

    monkeypatch.setattr(BarBuilder, "add", add_refusing_one_price)
    clean = ticks(count=20)
    records = [*clean[:5], tick_record(0, 5, 5 * 7 + 1, bid="1.99999")]
    records += [dataclasses.replace(r, offset=r.offset + 1) for r in clean[5:]]
    stage = Stage()
    await stage.assign(0)
    await stage.handle(records)
    assert stage.dead_letters.sent == [(5, "unprocessable")]
    assert stage.consumer.positions == {}  # no rewind
    assert stage.store.rows[0][0] == 21
    assert keyed(stage.publisher.bars) == await uninterrupted(clean)
