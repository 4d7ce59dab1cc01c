"""database-service's consumers: store ticks and bars; feed the bars cache."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from prometheus_client import CollectorRegistry, Counter

from services.database_service.cache import BarCache
from services.database_service.repository import BarRow, MarketRepository
from services.database_service.settings import DatabaseServiceSettings
from services.database_service.storing import IsolatingStore
from shared.bus.consume import RAW_BATCH, RecentIds, decode_records
from shared.events import MarketBar, MarketTick
from shared.kit.bus import ServiceBus
from shared.tick_decoder import decode_tick

log = logging.getLogger(__name__)

TICKS_GROUP = "database-service.ticks"
BARS_GROUP = "database-service.bars"
#: Pause before a batch is retried during a store outage (the batch is rewound, nothing is committed).
RETRY_PAUSE_S = 1.0
#: Dead-letter reason of a valid event that the working store refuses (``storing.py``).
STORE_REFUSED = "store_refused"


def subscribe(
    bus: ServiceBus,
    registry: CollectorRegistry,
    repo: MarketRepository,
    cache: BarCache,
    settings: DatabaseServiceSettings,
    *,
    ticks_group: str = TICKS_GROUP,
    bars_group: str = BARS_GROUP,
) -> CatchUp:
    """Store ticks and bars, and feed the bars cache; returns the feed's catch-up tracker.

    The groups are the contract's; a test gives its own to read the topics beside a running mesh.
    """
    stored = Counter("market_rows_stored_total", "Rows written to ClickHouse", ["table"], registry=registry)
    duplicates = Counter("market_duplicates_skipped_total", "Redelivered events skipped", ["table"], registry=registry)
    tick_dlq = bus.dead_letters(ticks_group)
    bar_dlq = bus.dead_letters(bars_group)
    seen_ticks, seen_bars = RecentIds(), RecentIds(50_000)
    tick_store, bar_store = IsolatingStore(repo.insert_ticks), IsolatingStore(repo.insert_bars)

    async def store(kind, records, group: str, dlq, seen, target: IsolatingStore, table: str, decode=None) -> None:
        decoded = await decode_records(kind, records, dlq, decode)
        fresh_events = seen.fresh(event for _, event in decoded)
        duplicates.labels(table).inc(len(decoded) - len(fresh_events))
        if len(fresh_events) == len(decoded):
            fresh = decoded
        else:  # the records of the fresh events, for their dead letters
            fresh_ids = {id(event) for event in fresh_events}
            fresh = [(record, event) for record, event in decoded if id(event) in fresh_ids]
        try:
            refused = await target.store(fresh)
            if refused:
                # Durably first: the dead-letter topic lives as long as the (embedded) broker does.
                await repo.insert_refused(group, STORE_REFUSED, [(r.item, r.error) for r in refused])
            for refusal in refused:
                await dlq.send(refusal.item, STORE_REFUSED, refusal.error)
            seen.forget([refusal.event for refusal in refused])  # not stored: a replay of them is stored
        except Exception:  # a store outage (StoreOutage), or the broker refusing a dead letter
            # Redelivered, every event is processed again: stored ones are one row anyway, and
            # refused ones must reach the dead-letter topic.
            seen.forget(fresh_events)
            log.exception("storing %d %s failed; the batch will be redelivered", len(fresh), table)
            await asyncio.sleep(RETRY_PAUSE_S)
            raise  # NACK_ON_ERROR rewinds the batch: nothing is lost, nothing committed past it
        stored.labels(table).inc(len(fresh) - len(refused))

    @bus.subscriber(
        MarketTick,
        group=ticks_group,
        listener=NewWriters(repo),
        batch=True,
        max_records=settings.consume_batch,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        batch_timeout_ms=50,
        **RAW_BATCH,
    )
    async def store_ticks(msg: KafkaMessage) -> None:
        await store(MarketTick, msg.raw_message, ticks_group, tick_dlq, seen_ticks, tick_store, "ticks", decode_tick)

    @bus.subscriber(
        MarketBar,
        group=bars_group,
        batch=True,
        max_records=settings.consume_batch,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        batch_timeout_ms=20,
        **RAW_BATCH,
    )
    async def store_bars(msg: KafkaMessage) -> None:
        await store(MarketBar, msg.raw_message, bars_group, bar_dlq, seen_bars, bar_store, "bars")

    feed = CatchUp()

    # No group: every instance reads every bar, from the start (see cache.py for why).
    @bus.subscriber(
        MarketBar,
        group=None,
        batch=True,
        max_records=settings.consume_batch,
        auto_offset_reset="earliest",
        batch_timeout_ms=5,
        fetch_max_wait_ms=settings.bars_feed_max_wait_ms,
        **RAW_BATCH,
    )
    async def feed_cache(msg: KafkaMessage) -> None:
        for record in msg.raw_message:
            try:
                bar = MarketBar.model_validate_json(record.value or b"")
            except ValueError:
                continue  # the storing consumer dead-letters it; the cache just ignores it
            cache.apply(bar.symbol, bar.timeframe, BarRow.of(bar))
            feed.seen(record.partition, record.offset)
        if not cache.caught_up and feed.done():
            cache.caught_up = True
            log.info("bars cache caught up with the feed")

    return feed


class NewWriters(ConsumerRebalanceListener):
    """At a rebalance, the repository forgets the newest stored tick times it kept: the symbols
    of a partition that moved are written by another instance now (or were, meanwhile)."""

    def __init__(self, repo: MarketRepository) -> None:
        self._repo = repo

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self._repo.forget_newest()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._repo.forget_newest()


class CatchUp:
    """Tracks a group-less consumer against the end offsets the topic had when the service started."""

    def __init__(self) -> None:
        self.targets: dict[int, int] | None = None
        self.positions: dict[int, int] = {}

    async def capture(self, bootstrap: str, topic: str) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            if not partitions:
                await consumer.topics()  # the first call may only fetch metadata
                partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            ends = await consumer.end_offsets(partitions) if partitions else {}
            starts = await consumer.beginning_offsets(partitions) if partitions else {}
        finally:
            await consumer.stop()
        # A partition with nothing in it (end == beginning) is caught up from the start.
        self.targets = {tp.partition: end - 1 for tp, end in ends.items() if end > starts[tp]}

    def seen(self, partition: int, offset: int) -> None:
        if offset > self.positions.get(partition, -1):
            self.positions[partition] = offset

    def done(self) -> bool:
        return self.targets is not None and all(self.positions.get(p, -1) >= t for p, t in self.targets.items())
