"""Last prices from the bars on the bus: what a market order reserves at; a malformed bar is dead-lettered."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared import topics
from shared.events import MarketBar, Timeframe, bar_event_id, encode_event
from tests.services.trading_engine.conftest import new_account


def bar(symbol: str, open_ns: int, close: str) -> MarketBar:
    price = Decimal(close)
    return MarketBar(
        event_id=bar_event_id(symbol, Timeframe.M1, open_ns),
        ts_event=open_ns,
        ts_init=open_ns,
        symbol=symbol,
        timeframe=Timeframe.M1,
        open=price,
        high=price,
        low=price,
        close=price,
        volume=1,
    )


async def test_a_market_order_reserves_at_the_last_bar_close(engine, infra_env):
    servers = infra_env[2].kafka_servers
    engine.venue.mode = "accept"
    prices = engine.state.orders.prices
    dlq = AIOKafkaConsumer(topics.DEAD_LETTERS, bootstrap_servers=servers, auto_offset_reset="latest")
    producer = AIOKafkaProducer(bootstrap_servers=servers)
    await dlq.start()
    await producer.start()
    try:
        while not dlq.assignment():
            await asyncio.sleep(0.05)
        for tp in dlq.assignment():
            await dlq.position(tp)
        # The engine reads from the latest offset: send until it has seen one (it may join late).
        async with asyncio.timeout(30):
            while prices.last_price("XAUUSD") is None:
                await producer.send_and_wait(topics.MARKET_BARS, b"not a bar", key=b"XAUUSD")
                await producer.send_and_wait(
                    topics.MARKET_BARS, encode_event(bar("XAUUSD", 60 * 10**9, "2000.00")), key=b"XAUUSD"
                )
                await asyncio.sleep(0.3)
        # An older bar (another timeframe's, late) does not replace a newer price.
        await producer.send_and_wait(topics.MARKET_BARS, encode_event(bar("XAUUSD", 10**9, "1.00")), key=b"XAUUSD")
        await producer.send_and_wait(
            topics.MARKET_BARS, encode_event(bar("XAUUSD", 120 * 10**9, "2100.00")), key=b"XAUUSD"
        )
        async with asyncio.timeout(15):
            while prices.last_price("XAUUSD") != Decimal("2100.00"):
                await asyncio.sleep(0.05)
        letters = await dlq.getmany(timeout_ms=3000)
        groups = [dict(r.headers).get("x-consumer-group") for batch in letters.values() for r in batch]
        assert b"trading-engine.bars" in groups
    finally:
        await producer.stop()
        await dlq.stop()
    account = await new_account(engine, "prices")
    body = {"account_id": account, "symbol": "XAUUSD", "side": "buy", "type": "market", "quantity": "0.01"}
    order = (await engine.http.post("/api/v1/orders", json=body, headers=engine.mint("prices"))).json()
    assert order["state"] == "accepted"
    reserved = await engine.pool.fetchval("SELECT amount FROM trading.reservations WHERE order_id = $1", order["id"])
    assert reserved == Decimal("0.01") * 100 * Decimal("2100") * Decimal("0.05") + Decimal("0.07")
