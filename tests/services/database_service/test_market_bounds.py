"""What the events allow is what market storage holds: the largest valid values round-trip exactly."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from shared.events import MarketBar, MarketTick, Timeframe, bar_event_id, tick_event_id

TS = 1_767_225_600_000_000_000
#: The largest price or tick quantity an event may carry, and the smallest step.
LARGEST = Decimal("9999999999.99999999")
SMALLEST = Decimal("0.00000001")


def market_tick(bid: Decimal, volume: Decimal, last: Decimal | None = None) -> MarketTick:
    return MarketTick(
        event_id=tick_event_id("BOUNDS", TS // 1_000_000, bid, bid, last, volume, 0),
        ts_event=TS,
        ts_init=TS,
        symbol="BOUNDS",
        bid=bid,
        ask=bid,
        last=last,
        volume=volume,
    )


@pytest.mark.parametrize("value", [LARGEST, SMALLEST, Decimal("12345.6789")])
async def test_every_valid_tick_value_is_stored_exactly(repo, value):
    tick = market_tick(value, value, last=value)
    await repo.insert_ticks([tick])
    rows = await repo.ch.rows(
        "SELECT toString(bid), toString(ask), toString(last), toString(volume) FROM market.ticks FINAL "
        f"WHERE event_id = '{tick.event_id}'"
    )
    assert [[Decimal(v) for v in row] for row in rows] == [[value] * 4]


@pytest.mark.parametrize(
    "field, value",
    [("volume", "12345678901.5"), ("volume", "1.123456789"), ("bid", "10000000000"), ("bid", "0.000000001")],
)
def test_the_tick_model_refuses_what_the_store_cannot_hold(field, value):
    values = {"bid": Decimal("1.1"), "volume": Decimal(0), field: Decimal(value)}
    with pytest.raises(ValidationError):
        market_tick(values["bid"], values["volume"])


async def test_a_bar_of_ten_billion_largest_ticks_is_a_valid_bar_and_stored_exactly(repo):
    # real_volume is a sum: Decimal128(8) holds 10**10 ticks of the largest volume (and far more).
    real_volume = sum([LARGEST] * 10, Decimal(0)) * 1_000_000_000
    bar = MarketBar(
        event_id=bar_event_id("BOUNDS", Timeframe.H1, TS),
        ts_event=TS,
        ts_init=TS,
        symbol="BOUNDS",
        timeframe=Timeframe.H1,
        open=LARGEST,
        high=LARGEST,
        low=SMALLEST,
        close=SMALLEST,
        volume=10_000_000_000,
        real_volume=real_volume,
    )
    await repo.insert_bars([bar])
    rows = await repo.ch.rows(
        "SELECT toString(open), toString(low), volume, toString(real_volume) FROM market.bars FINAL "
        f"WHERE event_id = '{bar.event_id}'"
    )
    assert [[Decimal(r[0]), Decimal(r[1]), r[2], Decimal(r[3])] for r in rows] == [
        [LARGEST, SMALLEST, 10_000_000_000, real_volume]
    ]
