"""performance-analytics's consumers: fills (counted once, stored first), validated signals, order
states, quotes.

Fills and signals are stored in ClickHouse *before* they change the live state, and the
batch's offsets are committed only after that (``NACK_ON_ERROR``: a failed store rewinds the
batch). A fill already counted (by its ``event_id``, which the engine derives from the venue's
deal id) is skipped, whether it comes again in this process or after a restart (the ids are
read back from storage at start). Ticks only move the marks: the newest quote per symbol is
kept in memory and written with each snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from prometheus_client import CollectorRegistry, Counter

from services.performance_analytics.accounting import FillFact
from services.performance_analytics.analytics import Analytics, SignalFacts, UnknownInstrument
from services.performance_analytics.settings import PerformanceAnalyticsSettings
from services.performance_analytics.store import PerformanceStore
from shared.bus.consume import RAW_BATCH, decode_records
from shared.events import Fill, MarketTick, OrderUpdated, ValidatedSignal
from shared.kit.bus import ServiceBus
from shared.tick_decoder import decode_tick

log = logging.getLogger(__name__)

FILLS_GROUP = "performance-analytics.fills"
SIGNALS_GROUP = "performance-analytics.signals"
ORDERS_GROUP = "performance-analytics.orders"
MARKS_GROUP = "performance-analytics.marks"
#: Pause before a batch whose store failed is redelivered.
RETRY_PAUSE_S = 1.0


class ReceiveClock:
    """Strictly increasing ns stamps of when fills were counted (their replay order)."""

    def __init__(self, clock: Callable[[], int] = time.time_ns) -> None:
        self._clock = clock
        self._last = 0

    def __call__(self) -> int:
        self._last = max(self._last + 1, self._clock())
        return self._last


def subscribe(
    bus: ServiceBus,
    registry: CollectorRegistry,
    analytics: Analytics,
    store: PerformanceStore,
    settings: PerformanceAnalyticsSettings,
) -> None:
    counted = Counter("performance_fills_total", "Fills by outcome", ["outcome"], registry=registry)
    fills_dlq = bus.dead_letters(FILLS_GROUP)
    signals_dlq = bus.dead_letters(SIGNALS_GROUP)
    marks_dlq = bus.dead_letters(MARKS_GROUP)
    orders_dlq = bus.dead_letters(ORDERS_GROUP)
    received = ReceiveClock()

    @bus.subscriber(
        Fill,
        group=FILLS_GROUP,
        batch=True,
        max_records=settings.consume_batch,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        batch_timeout_ms=20,
        **RAW_BATCH,
    )
    async def on_fills(msg: KafkaMessage) -> None:
        fresh: list[tuple[FillFact, int]] = []
        in_batch: set[int] = set()
        for record, fill in await decode_records(Fill, msg.raw_message, fills_dlq):
            if analytics.counted(fill.event_id) or fill.event_id.int in in_batch:
                counted.labels("duplicate").inc()
                continue
            try:
                fact = analytics.fact_of(fill)
            except UnknownInstrument as exc:
                await fills_dlq.send(record, "unknown_instrument", str(exc))
                continue
            in_batch.add(fill.event_id.int)
            fresh.append((fact, received()))
        if not fresh:
            return
        try:
            await store.insert_fills(fresh)
        except Exception:
            log.exception("storing %d fills failed; the batch will be redelivered", len(fresh))
            await asyncio.sleep(RETRY_PAUSE_S)
            raise
        for fact, _ in fresh:
            analytics.apply(fact)
        counted.labels("counted").inc(len(fresh))

    @bus.subscriber(
        ValidatedSignal,
        group=SIGNALS_GROUP,
        batch=True,
        max_records=settings.consume_batch,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        batch_timeout_ms=20,
        **RAW_BATCH,
    )
    async def on_signals(msg: KafkaMessage) -> None:
        facts = [SignalFacts.of(s) for _, s in await decode_records(ValidatedSignal, msg.raw_message, signals_dlq)]
        if not facts:
            return
        try:
            await store.insert_signals(facts)
        except Exception:
            log.exception("storing %d signals failed; the batch will be redelivered", len(facts))
            await asyncio.sleep(RETRY_PAUSE_S)
            raise
        for f in facts:
            analytics.remember_signal(f)

    # Orders: only their newest state is kept (ReplacingMergeTree by version), for the counts by state.
    @bus.subscriber(
        OrderUpdated,
        group=ORDERS_GROUP,
        batch=True,
        max_records=settings.consume_batch,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        batch_timeout_ms=20,
        **RAW_BATCH,
    )
    async def on_orders(msg: KafkaMessage) -> None:
        orders = [o for _, o in await decode_records(OrderUpdated, msg.raw_message, orders_dlq)]
        if not orders:
            return
        try:
            await store.insert_orders(orders)
        except Exception:
            log.exception("storing %d order updates failed; the batch will be redelivered", len(orders))
            await asyncio.sleep(RETRY_PAUSE_S)
            raise

    # Quotes matter only as the latest price: start at the end of the topic, keep the newest.
    @bus.subscriber(
        MarketTick,
        group=MARKS_GROUP,
        batch=True,
        max_records=max(settings.consume_batch, 5000),
        auto_offset_reset="latest",
        batch_timeout_ms=50,
        **RAW_BATCH,
    )
    async def on_ticks(msg: KafkaMessage) -> None:
        for _, tick in await decode_records(MarketTick, msg.raw_message, marks_dlq, decode_tick):
            analytics.quote(tick.symbol, tick.bid, tick.ask, tick.ts_event)
