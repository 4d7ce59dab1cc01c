"""The bar stage as a stateful handler, in memory: fake records, a fake consumer, publisher and
checkpoints. What must hold: bars are published before the checkpoint that covers their ticks,
a restart or a failed publish resumes from the checkpoint and rebuilds exactly the same bars,
an undecodable tick is dead-lettered and passed, a revoked partition is checkpointed; a new broker
log (another epoch) is read from its start with the checkpoint's state, a checkpoint never covers
bars still being published, and a checkpoint that cannot be read leaves its partition unbuilt.
(``tests/integration/test_market_path.py`` runs the same stage on the real broker.)"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from decimal import Decimal
from typing import Any, cast

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from prometheus_client import CollectorRegistry

from services.data_bridge import bar_stage
from services.data_bridge.bar_stage import BarStage, Checkpoint, Snapshot
from services.data_bridge.domain.bars import BarBuilder
from services.data_bridge.settings import DataBridgeSettings
from shared.events import MarketBar, MarketTick, Timeframe, encode_event, tick_event_id

TOPIC = MarketTick.TOPIC
BASE_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


class Journal(list[str]):
    """What happened, in order, across the fakes."""


class MemoryCheckpoints:
    """Checkpoints kept as PostgreSQL would keep them: the builder's JSON snapshot, the offset and its epoch.
    ``down`` makes it fail as a PostgreSQL that cannot be reached would."""

    def __init__(self, journal: Journal) -> None:
        self.rows: dict[int, tuple[int, str]] = {}
        self.epochs: dict[int, str | None] = {}
        self.bars_offsets: dict[int, dict[int, int] | None] = {}
        self.stored: dict[int, Snapshot] = {}
        self.down = False
        self.journal = journal

    async def load(self, partition: int) -> Checkpoint | None:
        self._check()
        row = self.rows.get(partition)
        if row is None:
            return None
        state = BarBuilder.restore(json.loads(row[1]))
        return Checkpoint(self.epochs.get(partition), row[0], state, self.bars_offsets.get(partition))

    async def load_stored(self, partition: int) -> Checkpoint | None:
        self._check()
        row = self.stored.get(partition)
        return (
            None if row is None else Checkpoint(row.epoch, row.next_offset, BarBuilder.restore(json.loads(row.state)))
        )

    async def save(self, partition: int, snapshot: Snapshot) -> None:
        self._check()
        self.rows[partition] = (snapshot.next_offset, snapshot.state)
        self.epochs[partition] = snapshot.epoch
        self.bars_offsets[partition] = snapshot.bars_offsets
        self.journal.append(f"checkpoint p{partition}@{snapshot.next_offset}")

    async def save_stored(self, partition: int, snapshot: Snapshot) -> None:
        self._check()
        self.stored[partition] = snapshot
        self.journal.append(f"stored p{partition}@{snapshot.next_offset}")

    def _check(self) -> None:
        if self.down:
            raise ConnectionRefusedError("PostgreSQL is away")


class Epochs:
    """The broker epoch as the stage reads it; a test sets ``value`` to 'restart' the broker."""

    def __init__(self, value: str = "epoch-1") -> None:
        self.value = value

    @property
    def last(self) -> str:  # a watcher that is always up to date
        return self.value

    async def current(self) -> str:
        return self.value


class Publisher:
    """``market.bars.v1`` as one partition: ``bars[i]`` is at offset ``i``."""

    def __init__(self, journal: Journal) -> None:
        self.bars: list[MarketBar] = []
        self.fail_next = False
        self.journal = journal

    async def publish(self, bars: list[MarketBar]) -> dict[int, int]:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("broker away")
        self.bars.extend(bars)
        self.journal.append(f"published {len(bars)}")
        return {0: len(self.bars) - 1} if bars else {}


class BarStorage:
    """database-service's bar group as the stage sees it: the offsets it committed after storing."""

    def __init__(self) -> None:
        self.committed: dict[int, int] = {}

    async def committed_offsets(self) -> dict[int, int]:
        return dict(self.committed)


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

    def __init__(self, store: MemoryCheckpoints | None = None, epochs: Epochs | None = None, **settings: Any) -> None:
        self.journal = store.journal if store is not None else Journal()
        self.store = store or MemoryCheckpoints(self.journal)
        self.epochs = epochs or Epochs()
        self.publisher = Publisher(self.journal)
        self.consumer = Consumer(self.journal)
        self.dead_letters = DeadLetters()
        self.storage = BarStorage()
        options = {"checkpoint_interval_ms": 0, **settings}
        self.stage = BarStage(
            DataBridgeSettings(**options),
            self.store,
            self.epochs,
            cast(Any, self.publisher),
            cast(Any, self.dead_letters),
            CollectorRegistry(),
            self.storage.committed_offsets,
        )
        self.stage.bind(lambda: cast(Any, self.consumer))

    async def assign(self, *partitions: int) -> None:
        await self.stage.on_partitions_assigned([TopicPartition(TOPIC, p) for p in partitions])

    async def handle(self, records: list[ConsumerRecord]) -> None:
        await self.stage.handle(tuple(records), cast(Any, self.consumer))

    async def store_bars(self) -> None:
        """database-service stores every bar published so far; the stage is told at its next confirmation."""
        self.storage.committed = {0: len(self.publisher.bars)}
        await self.stage.confirm_stored()


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


def relogged(records: list[ConsumerRecord], first_offset: int = 0) -> list[ConsumerRecord]:
    """The same ticks as a new broker's log holds them after the client sent them again: new offsets."""
    return [dataclasses.replace(r, offset=first_offset + i) for i, r in enumerate(records)]


async def test_a_checkpoint_of_another_epoch_resumes_its_state_from_the_start_of_the_new_log():
    # `make run`, stop, `make run`: PostgreSQL keeps the checkpoint, the new broker's log starts empty.
    records = ticks()
    first = Stage()
    await first.assign(0)
    await first.handle(records[:25])  # checkpoint p0@25 in epoch-1; ticks 25.. were never confirmed
    await first.store_bars()  # ... and its bars stored: the stored checkpoint is p0@25 too
    second = Stage(first.store, Epochs("epoch-2"))
    await second.assign(0)
    assert second.consumer.positions == {TopicPartition(TOPIC, 0): "beginning"}  # not offset 25 of a new log
    # The client sends what it holds unconfirmed again (a few ticks the checkpoint has: dropped by id).
    await second.handle(relogged(records[20:]))
    assert keyed(first.publisher.bars) | keyed(second.publisher.bars) == await uninterrupted(records)
    assert first.store.rows[0][0] == 40 and first.store.epochs[0] == "epoch-2"  # offsets of the new log


async def test_a_broker_restart_under_the_running_consumer_rewinds_instead_of_skipping():
    records = ticks()
    stage = Stage()
    await stage.assign(0)
    await stage.handle(records[:20])  # checkpoint p0@20 (epoch-1)
    await stage.store_bars()  # stored too: progress confirmed ticks 0-19
    stage.epochs.value = "epoch-2"  # the broker restarts; the client sends ticks 20.. again
    new_log = relogged(records[20:])
    # The consumer fetches on from its old position, 20, in the new log: ticks 20-39 would be skipped.
    await stage.handle(new_log[20:])
    assert stage.store.rows[0][0] == 20 and stage.store.epochs[0] == "epoch-1"  # nothing of it checkpointed
    assert stage.consumer.positions == {TopicPartition(TOPIC, 0): "beginning"}
    await stage.handle(new_log)  # what the consumer reads after the rewind
    assert keyed(stage.publisher.bars) == await uninterrupted(records)
    assert stage.store.rows[0][0] == len(new_log) and stage.store.epochs[0] == "epoch-2"


class SlowPublisher(Publisher):
    """Holds every publish until ``release`` is set, as a broker slow to acknowledge would."""

    def __init__(self, journal: Journal) -> None:
        super().__init__(journal)
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def publish(self, bars: list[MarketBar]) -> dict[int, int]:
        if bars:
            self.started.set()
            await self.release.wait()
        return await super().publish(bars)


@pytest.mark.parametrize("interrupt", ["revoke", "close"])
async def test_a_revoke_or_close_during_a_slow_publish_checkpoints_only_after_the_bars_are_published(interrupt):
    stage = Stage(checkpoint_interval_ms=60_000)
    stage.publisher = SlowPublisher(stage.journal)
    stage.stage._publisher = cast(Any, stage.publisher)
    await stage.assign(0)
    batch = asyncio.create_task(stage.handle(ticks()[:30]))
    await stage.publisher.started.wait()  # the batch's bars are on their way to the broker
    if interrupt == "revoke":  # aiokafka calls the listener without waiting for the handler
        listener = asyncio.create_task(stage.stage.on_partitions_revoked([TopicPartition(TOPIC, 0)]))
    else:  # shutdown: the kit's on_stop hook
        listener = asyncio.create_task(stage.stage.close())
    await asyncio.sleep(0.05)
    assert stage.store.rows == {}  # no checkpoint may cover ticks whose bars are not published
    stage.publisher.release.set()
    await asyncio.gather(batch, listener)
    assert stage.journal == ["published 3", "checkpoint p0@30"]


async def test_postgresql_away_at_assignment_builds_nothing_until_the_checkpoint_is_restored(monkeypatch):
    monkeypatch.setattr(bar_stage, "RESTORE_BACKOFF_MIN_S", 0)
    records = ticks()
    first = Stage()
    await first.assign(0)
    await first.handle(records[:25])  # checkpoint p0@25, with open bars
    second = Stage(first.store)
    first.store.down = True
    with contextlib.suppress(ConnectionRefusedError):  # aiokafka logs a listener's error and goes on
        await second.assign(0)
    # The consumer starts at Kafka's committed offset and fetches; nothing may be built from an empty builder.
    await second.handle(records[25:40])
    assert second.publisher.bars == [] and second.consumer.positions == {TopicPartition(TOPIC, 0): 25}
    first.store.down = False
    before = len(second.journal)
    await second.handle(records[25:40])  # read again: now restored, and the consumer moved to the checkpoint
    assert "seek p0@25" in second.journal[before:] and second.publisher.bars == []
    await second.handle(records[25:])
    assert keyed(first.publisher.bars) | keyed(second.publisher.bars) == await uninterrupted(records)


async def test_the_last_ticks_before_a_pause_are_checkpointed_without_waiting_for_another_tick():
    # A client that waits for /ingest/progress before sending more depends on it.
    stage = Stage(checkpoint_interval_ms=200)
    await stage.assign(0)
    await stage.handle(ticks()[:30])  # the partition was restored just now: no checkpoint due yet
    assert stage.store.rows == {}
    periodic = asyncio.create_task(stage.stage.checkpoint_periodically())
    await asyncio.sleep(0.5)
    assert stage.store.rows[0][0] == 30 and stage.consumer.committed == {TopicPartition(TOPIC, 0): 30}
    await stage.stage.close()
    await asyncio.wait_for(periodic, 1)  # it ends with the stage


async def test_a_checkpoint_becomes_the_stored_one_only_once_database_service_stored_its_bars():
    stage = Stage()
    await stage.assign(0)
    await stage.handle(ticks()[:30])  # checkpoint p0@30; its 3 bars are at offsets 0-2
    stage.storage.committed = {0: 2}  # bars 0 and 1 stored, bar 2 not yet
    await stage.stage.confirm_stored()
    assert stage.store.stored == {}  # progress would not confirm ticks 0-29 yet
    await stage.store_bars()
    assert stage.store.stored[0].next_offset == 30 and stage.store.stored[0].epoch == "epoch-1"
    before = list(stage.journal)
    await stage.stage.confirm_stored()  # nothing new: nothing written
    assert stage.journal == before


async def test_a_broker_restart_resumes_from_the_stored_checkpoint_and_rebuilds_the_bars_it_lost():
    # The bars of ticks 15-39 were published and checkpointed, but the broker died before
    # database-service stored them: they are gone with its log. Progress confirmed ticks up to the
    # stored checkpoint (15) only, so the client sends ticks 15.. again to the new log.
    records = ticks()
    first = Stage()
    await first.assign(0)
    await first.handle(records[:15])
    await first.store_bars()  # stored checkpoint p0@15
    stored_bars = list(first.publisher.bars)
    await first.handle(records[15:40])  # checkpoint p0@40, its bars never stored
    assert first.store.rows[0][0] == 40 and first.store.stored[0].next_offset == 15
    second = Stage(first.store, Epochs("epoch-2"))
    await second.assign(0)
    assert second.consumer.positions == {TopicPartition(TOPIC, 0): "beginning"}
    await second.handle(relogged(records[15:]))
    assert keyed(stored_bars) | keyed(second.publisher.bars) == await uninterrupted(records)


async def test_a_new_log_with_no_stored_checkpoint_starts_empty_and_a_legacy_checkpoint_is_resumed_itself():
    records = ticks()
    first = Stage()
    await first.assign(0)
    await first.handle(records[:25])  # saved, never stored: progress confirmed nothing
    second = Stage(first.store, Epochs("epoch-2"))
    await second.assign(0)
    await second.handle(relogged(records))  # so the client sends every tick again
    assert keyed(second.publisher.bars) == await uninterrupted(records)
    # A checkpoint saved before bar offsets were recorded (an existing var/postgres) is resumed
    # as it was then: its progress had confirmed up to it.
    first.store.bars_offsets[0] = None
    third = Stage(first.store, Epochs("epoch-3"))
    await third.assign(0)
    assert (
        third.stage._partitions[0].builder.snapshot()
        == BarBuilder.restore(json.loads(first.store.rows[0][1])).snapshot()
    )


async def test_a_checkpoint_of_a_dead_log_is_never_confirmed_as_stored():
    stage = Stage()
    await stage.assign(0)
    await stage.handle(ticks()[:30])  # checkpoint p0@30 in epoch-1
    stage.epochs.value = "epoch-2"  # the broker restarted: bar offsets of the new log mean nothing for it
    await stage.store_bars()
    assert stage.store.stored == {}


async def test_a_restarted_stage_confirms_the_checkpoint_it_resumed_from_without_waiting_for_another_tick():
    # data-bridge dies after its last checkpoint but before that checkpoint's bars were seen
    # stored; the client has sent everything and waits for confirmation: no tick will come.
    first = Stage()
    await first.assign(0)
    await first.handle(ticks()[:30])
    assert first.store.stored == {}
    second = Stage(first.store)
    second.publisher.bars = list(first.publisher.bars)  # the same log: the bars are in it
    await second.assign(0)
    await second.store_bars()
    assert second.store.stored[0].next_offset == 30
