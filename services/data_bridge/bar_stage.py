"""The bar stage: ``market.ticks.v1`` in, ``market.bars.v1`` out, state checkpointed in PostgreSQL.

It is a stateful stream processor. Its state (open bars, watermarks, recent tick
ids) belongs to a partition, because a partition holds every tick of its
symbols. On assignment it restores the partition's checkpoint and seeks to the
offset stored with it; while running it publishes bars first, then checkpoints
(state + next offset in one row) and commits that offset to Kafka. After a crash
it replays from the last checkpoint and rebuilds the same bars with the same
ids, which every consumer of bars already treats as duplicates. Nothing is lost
and nothing is doubled, and a partition can move to another instance (another
host) at any rebalance.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Protocol

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from prometheus_client import CollectorRegistry, Counter

from services.data_bridge.domain.bars import BarBuilder, TickOutcome
from services.data_bridge.settings import DataBridgeSettings
from shared import compat
from shared.bus.consume import RAW_BATCH, decode_records
from shared.bus.deadletter import DeadLetters
from shared.bus.pacing import Pace, PollPacer
from shared.bus.publish import BulkPublisher
from shared.events import MarketBar, MarketTick, now_ns
from shared.kit.bus import ServiceBus
from shared.tick_decoder import decode_tick

log = logging.getLogger(__name__)

GROUP = "data-bridge.bars"
RETRY_PAUSE_S = 1.0
#: Dead-letter reason of a valid tick whose processing raised (a replay would raise again).
UNPROCESSABLE = "unprocessable"
#: FastStream waits this long for records, then as long again before the next poll when there
#: were none: it adds to the tick -> bar latency while ticks flow, and to idle wake-ups after.
ACTIVE_BATCH_TIMEOUT_MS = 5
IDLE_BATCH_TIMEOUT_MS = 50


class Checkpoints(Protocol):
    """Where the bar stage keeps each partition's builder state with the offset it corresponds to."""

    async def load(self, partition: int) -> tuple[int, BarBuilder] | None: ...
    async def save(self, partition: int, next_offset: int, builder: BarBuilder) -> None: ...


class CheckpointStore:
    """Per-partition builder state and the offset it corresponds to, in one PostgreSQL row."""

    def __init__(self, pool: asyncpg.Pool, group: str = GROUP, topic: str = MarketTick.TOPIC) -> None:
        self._pool, self._group, self._topic = pool, group, topic

    async def load(self, partition: int) -> tuple[int, BarBuilder] | None:
        row = await self._pool.fetchrow(
            "SELECT next_offset, state FROM data_bridge.bar_checkpoints "
            "WHERE consumer_group = $1 AND topic = $2 AND partition = $3",
            self._group,
            self._topic,
            partition,
        )
        if row is None:
            return None
        return row["next_offset"], BarBuilder.restore(json.loads(row["state"]))

    async def save(self, partition: int, next_offset: int, builder: BarBuilder) -> None:
        await self._pool.execute(
            "INSERT INTO data_bridge.bar_checkpoints (consumer_group, topic, partition, next_offset, state) "
            "VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT (consumer_group, topic, partition) "
            "DO UPDATE SET next_offset = EXCLUDED.next_offset, state = EXCLUDED.state, updated_at = now()",
            self._group,
            self._topic,
            partition,
            next_offset,
            json.dumps(builder.snapshot()),
        )


class _Partition:
    __slots__ = ("builder", "checkpointed_at", "checkpointed_offset", "next_offset")

    def __init__(self, builder: BarBuilder, next_offset: int | None) -> None:
        self.builder = builder
        self.next_offset = next_offset
        self.checkpointed_offset = next_offset
        self.checkpointed_at = time.monotonic()


class BarStage(ConsumerRebalanceListener):
    def __init__(
        self,
        settings: DataBridgeSettings,
        store: Checkpoints,
        bar_publisher: BulkPublisher[MarketBar],
        dead_letters: DeadLetters,
        registry: CollectorRegistry,
    ) -> None:
        self.settings = settings
        self._store = store
        self._publisher = bar_publisher
        self._dead_letters = dead_letters
        self._partitions: dict[int, _Partition] = {}
        self._consumer: Callable[[], AIOKafkaConsumer | None] = lambda: None
        self.outcomes = Counter(
            "bar_stage_ticks_total", "Ticks seen by the bar builder, by outcome", ["outcome"], registry=registry
        )
        self.bars_published = Counter("bars_published_total", "Bars published", ["timeframe"], registry=registry)

    def _new_builder(self) -> BarBuilder:
        return BarBuilder(allowed_lateness_ns=self.settings.allowed_lateness_ms * 1_000_000)

    def bind(self, consumer: Callable[[], AIOKafkaConsumer | None]) -> None:
        self._consumer = consumer

    # -- rebalance ----------------------------------------------------------------

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        consumer = self._consumer()
        for tp in assigned:
            checkpoint = await self._store.load(tp.partition)
            if checkpoint is None:
                self._partitions[tp.partition] = _Partition(self._new_builder(), None)
                continue
            offset, builder = checkpoint
            self._partitions[tp.partition] = _Partition(builder, offset)
            if consumer is not None:
                consumer.seek(tp, offset)
            log.info("bar stage resumed partition %d at offset %d", tp.partition, offset)

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            part = self._partitions.pop(tp.partition, None)
            if part is not None:
                await self._checkpoint(tp.partition, part)

    async def close(self) -> None:
        """Checkpoint everything (on shutdown, before the consumer stops)."""
        for partition, part in list(self._partitions.items()):
            await self._checkpoint(partition, part)

    # -- processing ---------------------------------------------------------------

    async def handle(self, records: tuple, consumer: AIOKafkaConsumer) -> None:
        try:
            await self._handle(records, consumer)
        except Exception:
            # The builders may hold ticks whose bars were never published: go back to the
            # last checkpoint and read those ticks again, so no bar is skipped.
            log.exception("bar stage batch failed; rewinding to the last checkpoints")
            await self._rewind({r.partition for r in records}, consumer)
            await asyncio.sleep(RETRY_PAUSE_S)

    async def _rewind(self, partitions: set[int], consumer: AIOKafkaConsumer) -> None:
        for partition in partitions:
            tp = TopicPartition(MarketTick.TOPIC, partition)
            checkpoint = await self._store.load(partition)
            if checkpoint is None:
                self._partitions[partition] = _Partition(self._new_builder(), None)
                await consumer.seek_to_beginning(tp)
            else:
                offset, builder = checkpoint
                self._partitions[partition] = _Partition(builder, offset)
                consumer.seek(tp, offset)

    async def _handle(self, records: tuple, consumer: AIOKafkaConsumer) -> None:
        closed: list[MarketBar] = []
        touched: set[int] = set()
        now = now_ns()
        outcomes: dict[TickOutcome, int] = {}  # counted per batch: a labelled inc() per tick costs ~1 µs
        for record, tick in await decode_records(MarketTick, records, self._dead_letters, decode_tick):
            part = self._partitions.get(record.partition)
            if part is None:  # assigned without the listener having run (should not happen): start fresh
                part = self._partitions[record.partition] = _Partition(self._new_builder(), None)
            try:
                result = part.builder.add(tick, now)
            except Exception as exc:
                # Deterministic (the builder depends on the tick sequence only): rewinding would
                # meet it again, forever. Publishing failures stay transient retries (``handle``).
                await self._dead_letters.send(record, UNPROCESSABLE, f"{type(exc).__name__}: {exc}")
                continue
            outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
            if result.outcome is TickOutcome.ACCEPTED and result.closed:
                closed.extend(result.closed)
        for outcome, count in outcomes.items():
            self.outcomes.labels(outcome.value).inc(count)
        for record in records:  # dead letters advance the offset too: they are handled
            part = self._partitions.get(record.partition)
            if part is not None:
                part.next_offset = record.offset + 1
                touched.add(record.partition)
        # Bars first, checkpoint after: a crash in between replays to the same bars (same ids).
        await self._publisher.publish(closed)
        for bar in closed:
            self.bars_published.labels(bar.timeframe.value).inc()
        due = time.monotonic() - self.settings.checkpoint_interval_ms / 1000
        for partition in touched:
            part = self._partitions[partition]
            if part.checkpointed_at <= due:
                await self._checkpoint(partition, part, consumer)

    async def _checkpoint(self, partition: int, part: _Partition, consumer: AIOKafkaConsumer | None = None) -> None:
        if part.next_offset is None or part.next_offset == part.checkpointed_offset:
            return
        await self._store.save(partition, part.next_offset, part.builder)
        part.checkpointed_offset, part.checkpointed_at = part.next_offset, time.monotonic()
        consumer = consumer or self._consumer()
        if consumer is not None:
            # Kafka's committed offset follows the checkpoint, for tools that watch group lag.
            try:
                await consumer.commit({TopicPartition(MarketTick.TOPIC, partition): part.next_offset})
            except Exception as exc:  # a commit during a rebalance may fail; the checkpoint is what counts
                log.info("offset commit for partition %d skipped: %s", partition, exc)


def subscribe(bus: ServiceBus, stage: BarStage, fetch_max_wait_ms: int) -> PollPacer:
    """Subscribe the bar stage to the ticks; the returned pacer must run while the bus does."""
    settings = stage.settings
    subscriber = bus.subscriber(
        MarketTick,
        group=GROUP,
        batch=True,
        max_records=5000,
        batch_timeout_ms=ACTIVE_BATCH_TIMEOUT_MS,
        fetch_max_wait_ms=fetch_max_wait_ms,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.MANUAL,
        listener=stage,
        **RAW_BATCH,
    )
    pacer = PollPacer(
        subscriber,
        active=Pace(fetch_max_wait_ms, ACTIVE_BATCH_TIMEOUT_MS),
        idle=Pace(settings.idle_fetch_max_wait_ms, IDLE_BATCH_TIMEOUT_MS),
        idle_after_s=settings.idle_after_s,
    )

    @subscriber
    async def build_bars(msg: KafkaMessage) -> None:
        pacer.saw_records()
        await stage.handle(msg.raw_message, msg.consumer)

    stage.bind(lambda: compat.running_consumer(subscriber))
    return pacer
