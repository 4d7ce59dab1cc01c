"""The engine with the real paper venue (``venues/paper.py``) instead of the test venue: an order goes
from the request to a fill on the next ticks, and a lost answer is found again by reconciliation."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.trading_engine.venues.paper import PaperVenue, PaperVenueSettings
from tests.services.trading_engine.conftest import new_account
from tests.support import eventually

TICK_NS = 1_900_000_000_000_000_000  # after any submit of this run: the paper venue's clock is the wall's


@pytest.fixture
async def paper_engine(start_engine):
    settings = PaperVenueSettings(commission_per_lot=Decimal(7), partial_fill_ratio=Decimal("0.5"))
    from shared.events import now_ns

    def build(rt, sink):
        return PaperVenue(rt.postgres, settings, now_ns, sink)

    async with start_engine(venue=build) as engine:
        yield engine


async def order_of(engine, order_id: str, tenant: str) -> dict:
    return (await engine.http.get(f"/api/v1/orders/{order_id}", headers=engine.mint(tenant))).json()


async def test_an_order_fills_on_the_next_ticks_in_parts(paper_engine):
    engine = paper_engine
    engine.state.orders.prices.update("EURUSD", 1, Decimal("1.10000"))
    account = await new_account(engine, "paper-a")
    body = {"account_id": account, "symbol": "EURUSD", "side": "buy", "type": "market", "quantity": "0.20"}
    order = (await engine.http.post("/api/v1/orders", json=body, headers=engine.mint("paper-a"))).json()
    assert order["state"] in ("pending_submit", "accepted")
    await engine.venue.on_tick("EURUSD", Decimal("1.10000"), Decimal("1.10010"), TICK_NS)
    now = await eventually(
        lambda: _when(order_of(engine, order["id"], "paper-a"), lambda o: o["state"] == "partially_filled")
    )
    assert now["filled_quantity"] == "0.10"
    # Each tick fills half of what remains (at least one volume step): a few more ticks fill it all.
    for i in range(1, 8):
        await engine.venue.on_tick("EURUSD", Decimal("1.10000"), Decimal("1.10010"), TICK_NS + i * 10**9)
    now = await eventually(lambda: _when(order_of(engine, order["id"], "paper-a"), lambda o: o["state"] == "filled"))
    assert (now["filled_quantity"], now["average_fill_price"]) == ("0.20", "1.10010000")
    assert await engine.pool.fetchval("SELECT count(*) FROM trading.reservations WHERE order_id = $1", order["id"]) == 0
    # The engine's position is the venue's; the balance paid 7 per lot in commissions.
    drift = (await engine.http.get("/api/v1/positions/drift", headers=engine.mint("paper-a"))).json()["items"]
    assert drift == []
    balance = await engine.pool.fetchval("SELECT balance FROM trading.accounts WHERE id = $1", account)
    assert balance == Decimal(100000) - Decimal("1.4")


async def test_a_lost_answer_is_found_at_the_paper_venue(paper_engine):
    engine = paper_engine
    account = await new_account(engine, "paper-b")
    engine.venue.fail_next_submits("timeout")
    body = {
        "account_id": account,
        "symbol": "EURUSD",
        "side": "sell",
        "type": "limit",
        "quantity": "0.10",
        "limit_price": "1.20000",
    }
    order = (await engine.http.post("/api/v1/orders", json=body, headers=engine.mint("paper-b"))).json()
    assert order["state"] == "unknown"
    await engine.state.orders.reconcile()
    assert (await order_of(engine, order["id"], "paper-b"))["state"] == "accepted"
    assert engine.venue.name == "paper"


async def _when(fetch, predicate):
    value = await fetch
    return value if predicate(value) else None
