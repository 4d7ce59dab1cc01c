"""What trading-engine reads from the bus: bar closes, the last prices market orders reserve at."""

from __future__ import annotations

from faststream.kafka import KafkaMessage

from services.trading_engine.prices import LastPrices
from shared.bus.consume import RAW_BATCH, decode_records
from shared.events import MarketBar
from shared.kit.bus import ServiceBus

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
