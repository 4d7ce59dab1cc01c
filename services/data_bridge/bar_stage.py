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

An offset means something only in the log it was read from: the embedded broker
starts every run with a new, empty log. So a checkpoint also records the broker
epoch (``shared.bus.epoch``) its offset belongs to, a checkpoint is written only
after the epoch was read again and found unchanged, and a checkpoint of another
epoch resumes with its builder state from the start of the new log (see
docs/architecture.md, "Delivery across broker restarts").

A checkpoint proves its bars were *published*; the embedded broker's log can still die before
database-service stored them. So each checkpoint is also kept in memory as a candidate, with
the highest ``market.bars.v1`` offsets its bars reached, and becomes the partition's *stored*
checkpoint once database-service's bar group has committed past all of them. Ingest progress
confirms ticks only up to the stored checkpoint, and after a broker restart the stage resumes
from it: the bars the old log took with it are built again from ticks the client still holds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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
from shared.bus.epoch import EpochSource, EpochUnavailable
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
#: A partition whose checkpoint cannot be read (PostgreSQL away) is retried after this pause, doubling.
RESTORE_BACKOFF_MIN_S = 0.5
RESTORE_BACKOFF_MAX_S = 30.0
#: FastStream waits this long for records, then as long again before the next poll when there
#: were none: it adds to the tick -> bar latency while ticks flow, and to idle wake-ups after.
ACTIVE_BATCH_TIMEOUT_MS = 5
IDLE_BATCH_TIMEOUT_MS = 50
#: Candidates for the stored checkpoint kept per partition while database-service lags; beyond
#: it the newest is replaced, so the stored checkpoint only lags more, nothing is lost.
MAX_UNCONFIRMED_CHECKPOINTS = 64


@dataclass(frozen=True)
class Checkpoint:
    """A partition's builder state and the offset it corresponds to, in the log of ``epoch``."""

    epoch: str | None  # None: written before epochs were recorded, so of some earlier log
    next_offset: int
    builder: BarBuilder
    #: Highest ``market.bars.v1`` offset per bars partition of the bars published from this
    #: partition in ``epoch`` up to the checkpoint; None: written before these were recorded.
    bars_offsets: dict[int, int] | None = None


@dataclass(frozen=True)
class Snapshot:
    """What a checkpoint saves: the builder state (JSON), its offset and epoch, and the bars' offsets."""

    epoch: str
    next_offset: int
    state: str
    bars_offsets: dict[int, int]

    def stored_by(self, committed: dict[int, int]) -> bool:
        """Whether a group whose committed offsets are ``committed`` has stored every bar of it."""
        return all(committed.get(partition, 0) > offset for partition, offset in self.bars_offsets.items())


class Checkpoints(Protocol):
    """Where the bar stage keeps each partition's checkpoints: the last one saved (its bars were
    published) and the last one whose bars database-service stored."""

    async def load(self, partition: int) -> Checkpoint | None: ...
    async def load_stored(self, partition: int) -> Checkpoint | None: ...
    async def save(self, partition: int, snapshot: Snapshot) -> None: ...
    async def save_stored(self, partition: int, snapshot: Snapshot) -> None: ...


#: The two tables of ``CheckpointStore``: every checkpoint saved, and the stored ones.
_PUBLISHED, _STORED = "data_bridge.bar_checkpoints", "data_bridge.bar_stored_checkpoints"


class CheckpointStore:
    """Per-partition checkpoints in PostgreSQL: builder state, offset, epoch (and bar offsets), one row each."""

    def __init__(self, pool: asyncpg.Pool, group: str = GROUP, topic: str = MarketTick.TOPIC) -> None:
        self._pool, self._group, self._topic = pool, group, topic

    async def load(self, partition: int) -> Checkpoint | None:
        return await self._load(_PUBLISHED, partition)

    async def load_stored(self, partition: int) -> Checkpoint | None:
        return await self._load(_STORED, partition)

    async def save(self, partition: int, snapshot: Snapshot) -> None:
        await self._pool.execute(
            f"INSERT INTO {_PUBLISHED} (consumer_group, topic, partition, epoch, next_offset, state, bars_offsets) "
            "VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb) ON CONFLICT (consumer_group, topic, partition) "
            "DO UPDATE SET epoch = EXCLUDED.epoch, next_offset = EXCLUDED.next_offset, state = EXCLUDED.state, "
            "bars_offsets = EXCLUDED.bars_offsets, updated_at = now()",
            *self._key(partition),
            snapshot.epoch,
            snapshot.next_offset,
            snapshot.state,
            json.dumps(snapshot.bars_offsets),
        )

    async def save_stored(self, partition: int, snapshot: Snapshot) -> None:
        # Never backwards within an epoch: progress confirmed from it may already be acted on.
        await self._pool.execute(
            f"INSERT INTO {_STORED} AS s (consumer_group, topic, partition, epoch, next_offset, state) "
            "VALUES ($1, $2, $3, $4, $5, $6::jsonb) ON CONFLICT (consumer_group, topic, partition) "
            "DO UPDATE SET epoch = EXCLUDED.epoch, next_offset = EXCLUDED.next_offset, state = EXCLUDED.state, "
            "updated_at = now() WHERE s.epoch IS DISTINCT FROM EXCLUDED.epoch OR s.next_offset < EXCLUDED.next_offset",
            *self._key(partition),
            snapshot.epoch,
            snapshot.next_offset,
            snapshot.state,
        )

    async def stored_offsets(self) -> dict[int, tuple[str | None, int]]:
        """``{partition: (epoch, next_offset)}`` of every stored checkpoint (what ``/ingest/progress`` reports)."""
        rows = await self._pool.fetch(
            f"SELECT partition, epoch, next_offset FROM {_STORED} WHERE consumer_group = $1 AND topic = $2",
            self._group,
            self._topic,
        )
        return {row["partition"]: (row["epoch"], row["next_offset"]) for row in rows}

    def _key(self, partition: int) -> tuple[str, str, int]:
        return self._group, self._topic, partition

    async def _load(self, table: str, partition: int) -> Checkpoint | None:
        offsets = "bars_offsets" if table == _PUBLISHED else "NULL AS bars_offsets"
        row = await self._pool.fetchrow(
            f"SELECT epoch, next_offset, state, {offsets} FROM {table} "
            "WHERE consumer_group = $1 AND topic = $2 AND partition = $3",
            *self._key(partition),
        )
        if row is None:
            return None
        bars = row["bars_offsets"]
        return Checkpoint(
            row["epoch"],
            row["next_offset"],
            BarBuilder.restore(json.loads(row["state"])),
            None if bars is None else {int(p): o for p, o in json.loads(bars).items()},
        )


class BrokerRestarted(RuntimeError):
    """The broker's log changed under the running consumer: what it read since may come from either log."""


class _Partition:
    __slots__ = (
        "bars_offsets",
        "builder",
        "checkpointed_at",
        "checkpointed_offset",
        "epoch",
        "next_offset",
        "unconfirmed",
    )

    def __init__(
        self, builder: BarBuilder, next_offset: int | None, epoch: str, bars_offsets: dict[int, int] | None = None
    ) -> None:
        self.builder = builder
        self.next_offset = next_offset
        #: The log ``next_offset`` belongs to: verified against the broker before every checkpoint.
        self.epoch = epoch
        self.checkpointed_offset = next_offset
        self.checkpointed_at = time.monotonic()
        #: Highest bar offset per ``market.bars.v1`` partition published from this partition's
        #: ticks in ``epoch`` (by this process or, before its checkpoint, an earlier one).
        self.bars_offsets = dict(bars_offsets or {})
        #: Checkpoints saved whose bars database-service has not been seen to store yet, oldest first.
        self.unconfirmed: deque[Snapshot] = deque()


class BarStage(ConsumerRebalanceListener):
    """Builds bars from the ticks of its partitions; also the consumer's rebalance listener.

    One lock serialises the batch in flight with the rebalance callbacks and ``close``: aiokafka
    calls the listener without waiting for the handler, and a checkpoint taken meanwhile
    could cover ticks whose bars are not published yet.
    """

    def __init__(
        self,
        settings: DataBridgeSettings,
        store: Checkpoints,
        epochs: EpochSource,
        bar_publisher: BulkPublisher[MarketBar],
        dead_letters: DeadLetters,
        registry: CollectorRegistry,
        bars_stored: Callable[[], Awaitable[dict[int, int]]],
    ) -> None:
        self.settings = settings
        self._store = store
        self._epochs = epochs
        self._publisher = bar_publisher
        #: The offsets database-service's bar group has committed, per ``market.bars.v1`` partition.
        self._bars_stored = bars_stored
        self._dead_letters = dead_letters
        self._partitions: dict[int, _Partition] = {}
        #: Assigned partitions whose checkpoint could not be restored yet (value: restore as a rewind).
        #: Their records are not built until it is: an empty builder would publish partial bars
        #: over correct ones.
        self._unrestored: dict[int, bool] = {}
        self._restore_backoff_s = RESTORE_BACKOFF_MIN_S
        self._lock = asyncio.Lock()
        self._closed = False
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
        async with self._lock:
            consumer = self._consumer()
            for tp in assigned:
                try:
                    await self._restore(tp.partition, consumer, rewinding=False)
                except Exception as exc:
                    # Retried when its first records arrive (``_restore_pending``), never built meanwhile.
                    log.warning("bar stage cannot restore partition %d yet: %s", tp.partition, exc)
                    self._unrestored[tp.partition] = False

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self._lock:
            parts = {}
            for tp in revoked:
                self._unrestored.pop(tp.partition, None)
                part = self._partitions.pop(tp.partition, None)
                if part is not None:
                    parts[tp.partition] = part
            await self._checkpoint_if_verified(parts)

    async def close(self) -> None:
        """Checkpoint everything and build nothing more (on shutdown, before the consumer stops)."""
        async with self._lock:
            self._closed = True
            await self._checkpoint_if_verified(dict(self._partitions))

    async def checkpoint_periodically(self) -> None:
        """Checkpoint what the batches left unsaved once it is due, also when no further tick comes.

        Batches checkpoint only when they find a checkpoint due; without this, the last ticks
        before a pause would stay unconfirmed (``/ingest/progress``) until the next tick, and a
        client that waits for confirmation before sending more would wait for ever.
        """
        interval_s = self.settings.checkpoint_interval_ms / 1000
        while not self._closed:
            await asyncio.sleep(interval_s)
            async with self._lock:
                if self._closed:
                    return
                due = time.monotonic() - interval_s
                parts = {p: part for p, part in self._partitions.items() if part.checkpointed_at <= due}
                consumer = self._consumer()
                try:
                    await self._checkpoint(parts, consumer)
                except EpochUnavailable as exc:
                    log.warning("bar stage checkpoint postponed: %s", exc)
                except BrokerRestarted as exc:
                    log.warning("bar stage: %s; rewinding every partition to its checkpoint", exc)
                    if consumer is not None:
                        await self._rewind(set(self._partitions), consumer)
                except Exception:
                    log.exception("bar stage checkpoint failed; retrying at the next interval")

    async def confirm_stored_periodically(self) -> None:
        """Promote checkpoints whose bars database-service stored, every checkpoint interval."""
        interval_s = max(self.settings.checkpoint_interval_ms / 1000, 0.1)
        while not self._closed:
            await asyncio.sleep(interval_s)
            try:
                await self.confirm_stored()
            except EpochUnavailable as exc:
                log.info("bar stage cannot confirm stored bars now: %s", exc)
            except Exception:
                log.exception("confirming stored bars failed; retrying at the next interval")

    async def confirm_stored(self) -> None:
        """Save, per partition, the newest checkpoint all of whose bars database-service has stored
        (its bar group committed past their offsets) as the partition's stored checkpoint."""
        if not any(part.unconfirmed for part in self._partitions.values()):
            return
        epoch = await self._epochs.current()
        committed = await self._bars_stored()
        if await self._epochs.current() != epoch:
            return  # the offsets may be of either log: ask again next time
        async with self._lock:  # a revoked partition's candidates go with it, never saved after
            for partition, part in self._partitions.items():
                newest = None
                # Bar offsets only grow along the queue: the first one not stored ends the search.
                while part.unconfirmed and (
                    part.unconfirmed[0].epoch != epoch or part.unconfirmed[0].stored_by(committed)
                ):
                    candidate = part.unconfirmed.popleft()
                    if candidate.epoch == epoch:  # one of a dead log can never be confirmed
                        newest = candidate
                if newest is not None:
                    await self._store.save_stored(partition, newest)

    # -- restoring ----------------------------------------------------------------

    async def _restore(self, partition: int, consumer: AIOKafkaConsumer | None, *, rewinding: bool) -> bool:
        """Restore ``partition`` from its checkpoint and position the consumer for it.

        Returns whether the consumer was moved (records fetched before are then not to be built).
        Raises if the broker's epoch or the checkpoint cannot be read; nothing is changed then.
        """
        tp = TopicPartition(MarketTick.TOPIC, partition)
        epoch = await self._epochs.current()  # read before anything is fetched for this assignment
        checkpoint = await self._store.load(partition)
        if checkpoint is not None and checkpoint.epoch == epoch:
            self._unrestored.pop(partition, None)
            part = self._partitions[partition] = _Partition(
                checkpoint.builder, checkpoint.next_offset, epoch, checkpoint.bars_offsets
            )
            # A candidate at once: if no further tick comes, nothing else would confirm it.
            state = json.dumps(checkpoint.builder.snapshot())
            part.unconfirmed.append(Snapshot(epoch, checkpoint.next_offset, state, part.bars_offsets.copy()))
            if consumer is not None:
                consumer.seek(tp, checkpoint.next_offset)
            log.info("bar stage resumed partition %d at offset %d", partition, checkpoint.next_offset)
            return True
        new_log = checkpoint is not None
        if checkpoint is not None:
            checkpoint = await self._resumable_after_restart(partition, checkpoint)
        self._unrestored.pop(partition, None)
        if checkpoint is None:
            self._partitions[partition] = _Partition(self._new_builder(), None, epoch)
            if (rewinding or new_log) and consumer is not None:
                await consumer.seek_to_beginning(tp)
                return True
            return False
        # The broker's log is not the one the checkpoint's offset counts in: the broker restarted
        # and its log starts empty. The stored checkpoint's state is kept (it holds every tick up
        # to it, and their bars are in ClickHouse); the new log holds only ticks sent since,
        # among them every tick after it (the client re-sends what was not confirmed), read from
        # the new log's start. Ticks the builder already has come back as duplicates and are
        # dropped by id. See docs/architecture.md.
        self._partitions[partition] = _Partition(checkpoint.builder, None, epoch)
        if consumer is not None:
            await consumer.seek_to_beginning(tp)
        log.info(
            "bar stage resumed partition %d from the start of a new log (epoch %s; checkpoint of %s at offset %d)",
            partition,
            epoch,
            checkpoint.epoch,
            checkpoint.next_offset,
        )
        return True

    async def _resumable_after_restart(self, partition: int, published: Checkpoint) -> Checkpoint | None:
        """The checkpoint to resume from in a new log, given the last one saved, of an older log.

        Its stored checkpoint: the bars of a later one may have died with the old log, and their
        ticks were not confirmed (progress counts stored checkpoints), so the client sends them
        again. None if no bar of the partition was ever stored: every tick comes again. A
        checkpoint saved before bar offsets were recorded has no stored one and is resumed itself,
        as it was then.
        """
        stored = await self._store.load_stored(partition)
        if stored is not None or published.bars_offsets is not None:
            return stored
        return published

    async def _restore_pending(self, records: tuple, consumer: AIOKafkaConsumer) -> tuple[set[int], float]:
        """Restore the partitions of ``records`` that have no state yet. Returns the partitions whose
        records of this batch must not be built, and how long to pause before the next batch."""
        first: dict[int, int] = {}
        for record in records:
            if record.partition not in self._partitions:
                first.setdefault(record.partition, record.offset)
        skip: set[int] = set()
        pause = 0.0
        for partition, offset in first.items():
            rewinding = self._unrestored.get(partition, False)
            try:
                if await self._restore(partition, consumer, rewinding=rewinding):
                    skip.add(partition)
                self._restore_backoff_s = RESTORE_BACKOFF_MIN_S
            except Exception as exc:
                log.warning("bar stage still cannot restore partition %d: %s", partition, exc)
                self._unrestored[partition] = rewinding
                consumer.seek(TopicPartition(MarketTick.TOPIC, partition), offset)  # read them again later
                skip.add(partition)
                pause = self._restore_backoff_s
        if pause:
            self._restore_backoff_s = min(self._restore_backoff_s * 2, RESTORE_BACKOFF_MAX_S)
        return skip, pause

    async def _rewind(self, partitions: set[int], consumer: AIOKafkaConsumer) -> None:
        """Forget what was built since the partitions' checkpoints and read from there again."""
        for partition in partitions:
            self._partitions.pop(partition, None)
            try:
                await self._restore(partition, consumer, rewinding=True)
            except Exception as exc:
                log.warning("bar stage cannot restore partition %d after a failure: %s", partition, exc)
                self._unrestored[partition] = True

    # -- processing ---------------------------------------------------------------

    async def handle(self, records: tuple, consumer: AIOKafkaConsumer) -> None:
        pause = 0.0
        async with self._lock:
            if self._closed:
                return  # nothing is acknowledged: the next owner reads these again
            try:
                pause = await self._handle(records, consumer)
            except BrokerRestarted as exc:
                log.warning("bar stage: %s; rewinding every partition to its checkpoint", exc)
                await self._rewind(set(self._partitions), consumer)
            except Exception:
                # The builders may hold ticks whose bars were never published: go back to the
                # last checkpoint and read those ticks again, so no bar is skipped.
                log.exception("bar stage batch failed; rewinding to the last checkpoints")
                await self._rewind({r.partition for r in records}, consumer)
                pause = RETRY_PAUSE_S
        if pause:
            await asyncio.sleep(pause)  # outside the lock: a rebalance need not wait for it

    async def _handle(self, records: tuple, consumer: AIOKafkaConsumer) -> float:
        skip, pause = await self._restore_pending(records, consumer)
        if skip:
            records = tuple(r for r in records if r.partition not in skip)
        closed: list[MarketBar] = []
        touched: set[int] = set()
        now = now_ns()
        outcomes: dict[TickOutcome, int] = {}  # counted per batch: a labelled inc() per tick costs ~1 µs
        closing: set[int] = set()  # partitions whose ticks closed bars in this batch
        for record, tick in await decode_records(MarketTick, records, self._dead_letters, decode_tick):
            try:
                result = self._partitions[record.partition].builder.add(tick, now)
            except Exception as exc:
                # Deterministic (the builder depends on the tick sequence only): rewinding would
                # meet it again, forever. Publishing failures stay transient retries (``handle``).
                await self._dead_letters.send(record, UNPROCESSABLE, f"{type(exc).__name__}: {exc}")
                continue
            outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
            if result.outcome is TickOutcome.ACCEPTED and result.closed:
                closed.extend(result.closed)
                closing.add(record.partition)
        for outcome, count in outcomes.items():
            self.outcomes.labels(outcome.value).inc(count)
        for record in records:  # dead letters advance the offset too: they are handled
            self._partitions[record.partition].next_offset = record.offset + 1
            touched.add(record.partition)
        epoch = None
        if closed:
            # Bars only from ticks of one log: had the broker restarted since the partitions were
            # restored, this batch could continue their state with ticks of another log.
            epoch = await self._recent_epoch()
            self._verify(epoch, {p: self._partitions[p] for p in touched})
        # Bars first, checkpoint after: a crash in between replays to the same bars (same ids).
        written = await self._publisher.publish(closed)
        for partition in closing:  # each is charged the whole batch's offsets: merely conservative
            offsets = self._partitions[partition].bars_offsets
            for bars_partition, offset in written.items():
                offsets[bars_partition] = max(offsets.get(bars_partition, -1), offset)
        for bar in closed:
            self.bars_published.labels(bar.timeframe.value).inc()
        due = time.monotonic() - self.settings.checkpoint_interval_ms / 1000
        parts = {p: self._partitions[p] for p in touched if self._partitions[p].checkpointed_at <= due}
        try:
            await self._checkpoint(parts, consumer, epoch)
        except EpochUnavailable as exc:  # the next batch tries again; nothing is lost by waiting
            log.warning("bar stage checkpoint postponed: %s", exc)
        return pause

    @staticmethod
    def _verify(epoch: str, parts: dict[int, _Partition]) -> None:
        changed = sorted(p for p, part in parts.items() if part.epoch != epoch)
        if changed:
            raise BrokerRestarted(f"the broker's log changed (epoch {epoch}) under partitions {changed}")

    async def _checkpoint_if_verified(self, parts: dict[int, _Partition]) -> None:
        try:
            await self._checkpoint(parts)
        except (BrokerRestarted, EpochUnavailable) as exc:
            # What was built since the last checkpoint is dropped: its ticks are read again from
            # the last checkpoint (or sent again by the client, which has no confirmation for them).
            log.warning("bar stage did not checkpoint partitions %s: %s", sorted(parts), exc)

    async def _recent_epoch(self) -> str:
        """The epoch as the watcher last read it (a broker round trip per batch cost the tick -> bar
        latency tens of milliseconds), or read now when unknown (the broker was away).

        It may be older than the records (a restart the watcher has not seen yet, within its
        interval): then a checkpoint names the old log with offsets of the new one, and its
        restore reads the new log from the start with the saved state, whose ticks come back
        as duplicates: nothing is skipped. It is never newer than the records' log by more than
        a restart, which ``_verify`` catches (the partition was restored under an older epoch).
        """
        return self._epochs.last or await self._epochs.current()

    async def _checkpoint(
        self, parts: dict[int, _Partition], consumer: AIOKafkaConsumer | None = None, epoch: str | None = None
    ) -> None:
        """Save the partitions' state, if their offsets are still offsets of the broker's current log.

        ``epoch`` (else the recent one, see ``_recent_epoch``): if it is the one the partition was
        restored under, the offsets are of that log or, at worst, of a newer log labelled with the
        older epoch, which a restore treats as a new log (no tick skipped).
        """
        pending = {p: part for p, part in parts.items() if part.next_offset not in (None, part.checkpointed_offset)}
        if not pending:
            return
        if epoch is None:
            epoch = await self._recent_epoch()
        self._verify(epoch, pending)
        consumer = consumer or self._consumer()
        for partition, part in pending.items():
            assert part.next_offset is not None
            snapshot = Snapshot(epoch, part.next_offset, json.dumps(part.builder.snapshot()), dict(part.bars_offsets))
            await self._store.save(partition, snapshot)
            part.checkpointed_offset, part.checkpointed_at = part.next_offset, time.monotonic()
            if len(part.unconfirmed) >= MAX_UNCONFIRMED_CHECKPOINTS:
                part.unconfirmed.pop()
            part.unconfirmed.append(snapshot)
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
