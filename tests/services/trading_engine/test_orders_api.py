"""The orders API against the real engine (PostgreSQL, broker) and the test venue: placing, the
order's path through its states, fills into positions and balance, validation, cancel, events."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from aiokafka import AIOKafkaConsumer

from shared import topics
from shared.events import Fill, OrderUpdated, order_event_id
from tests.services.trading_engine.conftest import new_account

MARKET = {"symbol": "EURUSD", "side": "buy", "type": "market", "quantity": "0.10"}


@pytest.fixture
async def account(engine):
    engine.venue.mode = "accept"
    engine.state.orders.prices.update("EURUSD", 1, Decimal("1.10000"))
    return await new_account(engine, "alpha")


async def test_a_market_order_fills_into_a_position_and_the_balance(engine, account):
    engine.venue.mode = "fill"
    headers = engine.mint("alpha")
    r = await engine.http.post("/api/v1/orders", json={**MARKET, "account_id": account}, headers=headers)
    assert r.status_code == 201, r.text
    order = r.json()
    assert (order["state"], order["filled_quantity"], order["average_fill_price"]) == ("filled", "0.10", "1.10000000")
    # new -> pending_submit -> accepted -> filled: four versions, each a transition row.
    history = await engine.pool.fetch(
        "SELECT from_state, to_state FROM trading.order_transitions WHERE order_id = $1 ORDER BY version", order["id"]
    )
    assert [(h["from_state"], h["to_state"]) for h in history] == [
        (None, "new"),
        ("new", "pending_submit"),
        ("pending_submit", "accepted"),
        ("accepted", "filled"),
    ]
    [position] = (await engine.http.get("/api/v1/positions", params={"account_id": account}, headers=headers)).json()[
        "items"
    ]
    assert (Decimal(position["quantity"]), Decimal(position["average_price"])) == (Decimal("0.1"), Decimal("1.1"))
    # 0.1 lot * 100,000 * 1.1 * 0.0333 margin; commission 0.7 paid; nothing reserved any more.
    acct = (await engine.http.get(f"/api/v1/accounts/{account}", headers=headers)).json()
    assert Decimal(acct["balance"]) == Decimal("99999.3")
    assert Decimal(acct["used_margin"]) == Decimal("366.3")
    assert Decimal(acct["reserved"]) == 0
    fills = (await engine.http.get("/api/v1/fills", params={"order_id": order["id"]}, headers=headers)).json()
    assert fills["total"] == 1 and Decimal(fills["items"][0]["commission"]) == Decimal("0.7")


async def test_closing_a_position_realises_its_pnl(engine, account):
    engine.venue.mode = "fill"
    headers = engine.mint("alpha")
    buy = {**MARKET, "account_id": account, "type": "limit", "limit_price": "1.10000"}
    sell = {**buy, "side": "sell", "limit_price": "1.10500"}
    assert (await engine.http.post("/api/v1/orders", json=buy, headers=headers)).json()["state"] == "filled"
    assert (await engine.http.post("/api/v1/orders", json=sell, headers=headers)).json()["state"] == "filled"
    [position] = (await engine.http.get("/api/v1/positions", params={"account_id": account}, headers=headers)).json()[
        "items"
    ]
    # 0.1 lot * 100,000 * 0.005 = 50 realised; two commissions of 0.7.
    assert (Decimal(position["quantity"]), Decimal(position["realized_pnl"])) == (0, Decimal(50))
    acct = (await engine.http.get(f"/api/v1/accounts/{account}", headers=headers)).json()
    assert Decimal(acct["balance"]) == Decimal("100048.6")
    assert Decimal(acct["used_margin"]) == 0


async def test_partial_fills_keep_the_unfilled_share_reserved(engine, account):
    headers = engine.mint("alpha")
    body = {**MARKET, "account_id": account, "type": "limit", "limit_price": "1.00000", "quantity": "1.00"}
    order = (await engine.http.post("/api/v1/orders", json=body, headers=headers)).json()
    assert order["state"] == "accepted"
    full = Decimal(100_000) * Decimal("0.0333") + 7  # margin at 1.0 + the expected commission
    reserved = await engine.pool.fetchval("SELECT amount FROM trading.reservations WHERE order_id = $1", order["id"])
    assert reserved == full
    await engine.venue.fill(account, order["client_order_id"], Decimal("0.25"))
    await engine.venue.fill(account, order["client_order_id"], Decimal("0.25"))
    now = (await engine.http.get(f"/api/v1/orders/{order['id']}", headers=headers)).json()
    assert (now["state"], now["filled_quantity"], now["version"]) == ("partially_filled", "0.50", 5)
    reserved = await engine.pool.fetchval("SELECT amount FROM trading.reservations WHERE order_id = $1", order["id"])
    assert reserved == full / 2
    # Canceled: the rest of the reservation is released.
    r = await engine.http.delete(f"/api/v1/orders/{order['id']}", headers=headers)
    assert r.status_code == 202 and r.json()["state"] == "canceled"
    assert await engine.pool.fetchval("SELECT count(*) FROM trading.reservations WHERE order_id = $1", order["id"]) == 0
    # A terminal order cannot be canceled again.
    r = await engine.http.delete(f"/api/v1/orders/{order['id']}", headers=headers)
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"


async def test_a_fill_reported_twice_is_booked_once(engine, account):
    headers = engine.mint("alpha")
    body = {**MARKET, "account_id": account, "type": "limit", "limit_price": "1.00000", "quantity": "0.50"}
    order = (await engine.http.post("/api/v1/orders", json=body, headers=headers)).json()
    deal = await engine.venue.fill(account, order["client_order_id"], Decimal("0.20"))
    from services.trading_engine.venues.base import VenueReport

    again = VenueReport("fill", account, order["client_order_id"], 1, "V", fill=deal)
    assert await engine.state.orders.on_report(again) is False
    assert await engine.state.orders.on_report(VenueReport("accepted", account, order["client_order_id"], 1)) is False
    now = (await engine.http.get(f"/api/v1/orders/{order['id']}", headers=headers)).json()
    assert (now["filled_quantity"], now["version"]) == ("0.20", 4)
    assert await engine.pool.fetchval("SELECT count(*) FROM trading.fills WHERE order_id = $1", order["id"]) == 1
    [position] = (await engine.http.get("/api/v1/positions", params={"account_id": account}, headers=headers)).json()[
        "items"
    ]
    assert Decimal(position["quantity"]) == Decimal("0.2")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"symbol": "NOPEUSD"}, "symbol"),
        ({"quantity": "0.001"}, "quantity"),
        ({"quantity": "0.015"}, "quantity"),
        ({"quantity": "600"}, "quantity"),
        ({"quantity": "-1"}, "quantity"),
        ({"quantity": "abc"}, "quantity"),
        ({"type": "limit"}, "limit_price"),
        ({"type": "stop"}, "stop_price"),
        ({"type": "stop_limit", "stop_price": "1.1"}, "limit_price"),
        ({"type": "stop_limit", "limit_price": "1.1"}, "stop_price"),
        ({"limit_price": "1.1"}, "limit_price"),
        ({"type": "limit", "limit_price": "1.100001"}, "limit_price"),
        ({"side": "hold"}, "side"),
        ({"time_in_force": "forever"}, "time_in_force"),
        ({"surprise": 1}, "surprise"),
    ],
)
async def test_bad_orders_are_422_naming_the_field(engine, account, change, field):
    r = await engine.http.post(
        "/api/v1/orders", json={**MARKET, "account_id": account, **change}, headers=engine.mint("alpha")
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"].startswith(f"body.{field}"), r.json()


async def test_orders_need_the_trade_scope(engine, account):
    r = await engine.http.post(
        "/api/v1/orders", json={**MARKET, "account_id": account}, headers=engine.mint("alpha", ("market:read",))
    )
    assert r.status_code == 403


async def test_an_unreachable_venue_rejects_and_releases(engine, account):
    engine.venue.mode = "unreachable"
    headers = engine.mint("alpha")
    order = (await engine.http.post("/api/v1/orders", json={**MARKET, "account_id": account}, headers=headers)).json()
    assert (order["state"], order["reason_code"]) == ("rejected", "venue_unreachable")
    assert await engine.pool.fetchval("SELECT count(*) FROM trading.reservations WHERE order_id = $1", order["id"]) == 0


async def test_a_market_order_without_a_known_price_is_rejected(engine, account):
    body = {**MARKET, "account_id": account, "symbol": "GBPUSD"}
    order = (await engine.http.post("/api/v1/orders", json=body, headers=engine.mint("alpha"))).json()
    assert (order["state"], order["reason_code"]) == ("rejected", "no_reference_price")
    assert engine.venue.submits == 0 or all(h.order.symbol != "GBPUSD" for h in engine.venue.held.values())


async def test_every_change_is_an_event_on_the_bus(engine, account, infra_env):
    engine.venue.mode = "fill"
    order = (
        await engine.http.post("/api/v1/orders", json={**MARKET, "account_id": account}, headers=engine.mint("alpha"))
    ).json()
    _, _, session = infra_env
    consumer = AIOKafkaConsumer(
        topics.ORDERS, topics.FILLS, bootstrap_servers=session.kafka_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    updates: dict[int, OrderUpdated] = {}
    arrival: list[int] = []
    fills: list[Fill] = []
    try:
        async with asyncio.timeout(20):
            while len(updates) < 4 or not fills:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        if record.topic == topics.ORDERS:
                            event = OrderUpdated.model_validate_json(record.value)
                            if str(event.order_id) == order["id"]:
                                updates[event.version] = event
                                arrival.append(event.version)
                        else:
                            fill = Fill.model_validate_json(record.value)
                            if str(fill.order_id) == order["id"]:
                                fills.append(fill)
    finally:
        await consumer.stop()
    assert [updates[v].state for v in sorted(updates)] == ["new", "pending_submit", "accepted", "filled"]
    assert arrival == [1, 2, 3, 4]  # one key (the account): in the order they were committed
    assert all(updates[v].event_id == order_event_id(updates[v].order_id, v) for v in updates)
    assert fills[0].quantity == Decimal("0.10") and fills[0].commission == Decimal("0.70")
    # Delivered events leave the outbox.
    await engine.state.orders.outbox.drain()
    assert await engine.pool.fetchval("SELECT count(*) FROM trading.outbox") == 0


@pytest.mark.parametrize(("kind", "reason_code"), [("expired", "day_order_expired"), ("rejected", "market_closed")])
async def test_an_order_the_venue_ends_releases_its_money(engine, account, kind, reason_code):
    headers = engine.mint("alpha")
    if kind == "rejected":
        engine.venue.mode = "lost_answer"  # still unknown here: the venue may yet refuse it
        engine.venue.fill_on_lost = False
    body = {**MARKET, "account_id": account, "type": "limit", "limit_price": "1.00000", "time_in_force": "day"}
    order = (await engine.http.post("/api/v1/orders", json=body, headers=headers)).json()
    engine.venue.fill_on_lost = True
    assert await engine.pool.fetchval("SELECT count(*) FROM trading.reservations WHERE order_id = $1", order["id"]) == 1
    await engine.venue.end(account, order["client_order_id"], kind, reason_code)
    now = (await engine.http.get(f"/api/v1/orders/{order['id']}", headers=headers)).json()
    assert (now["state"], now["reason_code"]) == (kind, reason_code)
    assert await engine.pool.fetchval("SELECT count(*) FROM trading.reservations WHERE order_id = $1", order["id"]) == 0
    # A late report of another ending changes nothing.
    from services.trading_engine.venues.base import VenueReport

    late = VenueReport("canceled", account, order["client_order_id"], 1)
    assert await engine.state.orders.on_report(late) is False


async def test_listing_filters_and_pages(engine):
    engine.venue.mode = "accept"
    account = await new_account(engine, "lister")
    headers = engine.mint("lister")
    body = {**MARKET, "account_id": account, "type": "limit"}
    placed = [
        (await engine.http.post("/api/v1/orders", json={**body, "symbol": s, "limit_price": p}, headers=headers)).json()
        for s, p in (("EURUSD", "1.00000"), ("GBPUSD", "1.20000"), ("EURUSD", "1.00010"))
    ]
    await engine.http.delete(f"/api/v1/orders/{placed[0]['id']}", headers=headers)

    async def ids(**params) -> list[str]:
        r = await engine.http.get("/api/v1/orders", params={"account_id": account, **params}, headers=headers)
        assert r.status_code == 200, r.text
        return [o["id"] for o in r.json()["items"]]

    assert await ids() == [o["id"] for o in reversed(placed)]  # newest first
    assert await ids(symbol="EURUSD") == [placed[2]["id"], placed[0]["id"]]
    assert await ids(state="canceled") == [placed[0]["id"]]
    assert await ids(state="accepted", symbol="GBPUSD") == [placed[1]["id"]]
    page = (
        await engine.http.get(
            "/api/v1/orders", params={"account_id": account, "limit": 2, "offset": 2}, headers=headers
        )
    ).json()
    assert (page["total"], [o["id"] for o in page["items"]]) == (3, [placed[0]["id"]])
    r = await engine.http.get("/api/v1/orders", params={"state": "done"}, headers=headers)
    assert r.status_code == 422 and r.json()["detail"].startswith("query.state")
    r = await engine.http.get("/api/v1/orders", params={"limit": 0}, headers=headers)
    assert r.status_code == 422 and r.json()["detail"].startswith("query.limit")
