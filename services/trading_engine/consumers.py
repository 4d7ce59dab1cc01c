"""What trading-engine reads from the bus: bar closes (the last prices market orders reserve at),
ticks (the paper venue's fills, the bots' stops), validated signals and feature vectors (the bots)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from faststream.kafka import KafkaMessage
from faststream.middlewares import AckPolicy

from services.trading_engine.prices import LastPrices
from shared.bus.consume import RAW_BATCH, decode_records, split_by_topic
from shared.bus.pacing import ACTIVE_BATCH_TIMEOUT_MS, PollPacer, signal_path_pacer
from shared.events import FeatureVector, MarketBar, MarketTick, ValidatedSignal
from shared.kit.bus import ServiceBus
from shared.settings import SignalPathPolling

#: Every instance keeps its own prices (no group: each reads every bar).
BARS = "trading-engine.bars"


def subscribe_prices(bus: ServiceBus, prices: LastPrices) -> None:
    """Feed ``prices`` with the close of every bar (a malformed bar is dead-lettered)."""
    dead = bus.dead_letters(BARS)
    sub = bus.subscriber(MarketBar, group=None, batch=True, max_records=500, auto_offset_reset="latest", **RAW_BATCH)

    @sub
    async def bars(msg: KafkaMessage) -> None:
        for _, bar in await decode_records(MarketBar, msg.raw_message, dead):
            # Ordered by close time: an H1 bar closes after the M1 bars that opened inside it.
            prices.update(bar.symbol, bar.ts_event + bar.timeframe.nanos, bar.close)


#: Ticks: every instance reads every tick from the newest on (a restart never replays old ticks
#: into paper fills: an order fills on a tick after its submit).
TICKS = "trading-engine.ticks"
#: The bots' inputs, as one consumer group: a restart resumes where the last committed batch ended,
#: and a batch that failed is read again (the bots skip what they decided already).
BOT_INPUTS = "trading-engine.bots"

TickHandler = Callable[[MarketTick], Awaitable[None]]


def subscribe_ticks(bus: ServiceBus, on_tick: TickHandler, fetch_max_wait_ms: int) -> None:
    """Feed ``on_tick`` every tick, in order per symbol (a malformed tick is dead-lettered)."""
    dead = bus.dead_letters(TICKS)
    sub = bus.subscriber(
        MarketTick,
        group=None,
        batch=True,
        max_records=500,
        auto_offset_reset="latest",
        fetch_max_wait_ms=fetch_max_wait_ms,
        **RAW_BATCH,
    )

    @sub
    async def ticks(msg: KafkaMessage) -> None:
        for _, tick in await decode_records(MarketTick, msg.raw_message, dead):
            await on_tick(tick)


def subscribe_bot_inputs(
    bus: ServiceBus,
    on_signal: Callable[[ValidatedSignal], Awaitable[object]],
    on_vector: Callable[[FeatureVector], Awaitable[object]],
    settings: SignalPathPolling,
    fetch_max_wait_ms: int,
) -> PollPacer:
    """Feed the bots the validated signals and the feature vectors (one consumer, paced like the
    rest of the signal's path); returns the pacer, which must run while the bus does."""
    dead = bus.dead_letters(BOT_INPUTS)
    sub = bus.subscriber_of_many(
        (ValidatedSignal, FeatureVector),
        group=BOT_INPUTS,
        batch=True,
        max_records=200,
        auto_offset_reset="latest",
        ack_policy=AckPolicy.NACK_ON_ERROR,  # a failed submission reads the batch again
        # A restarted engine (kill -9 leaves its old member behind) takes the group over this soon.
        session_timeout_ms=6000,
        heartbeat_interval_ms=2000,
        batch_timeout_ms=ACTIVE_BATCH_TIMEOUT_MS,
        fetch_max_wait_ms=fetch_max_wait_ms,
        **RAW_BATCH,
    )

    @sub
    async def inputs(msg: KafkaMessage) -> None:
        pacer.saw_records()
        by_topic = split_by_topic(msg.raw_message)
        for _, vector in await decode_records(FeatureVector, by_topic.get(FeatureVector.TOPIC, []), dead):
            await on_vector(vector)
        for _, signal in await decode_records(ValidatedSignal, by_topic.get(ValidatedSignal.TOPIC, []), dead):
            await on_signal(signal)

    pacer = signal_path_pacer(sub, settings=settings, fetch_max_wait_ms=fetch_max_wait_ms)
    return pacer
