"""BalanceManager under concurrent orders: exactly the orders that fit are accepted, the rest refused
``insufficient_funds``, the reservations never exceed the balance, and they hold across a restart."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from tests.services.trading_engine.conftest import new_account

#: One lot of EURUSD at 1.00000: 100,000 * 0.0333 margin + 7 expected commission.
PER_ORDER = Decimal(3337)
FITS = 7


async def test_twenty_concurrent_orders_against_a_balance_for_seven(engine, start_engine):
    engine.venue.mode = "accept"
    balance = PER_ORDER * FITS + 100  # not enough for an eighth
    account = await new_account(engine, "conc", str(balance))
    headers = engine.mint("conc")
    body = {"account_id": account, "symbol": "EURUSD", "side": "buy", "type": "limit", "quantity": "1.00"}

    async def place(i: int) -> dict:
        r = await engine.http.post("/api/v1/orders", json={**body, "limit_price": "1.00000"}, headers=headers)
        assert r.status_code == 201, r.text
        return r.json()

    orders = await asyncio.gather(*(place(i) for i in range(20)))
    accepted = [o for o in orders if o["state"] == "accepted"]
    rejected = [o for o in orders if o["state"] == "rejected"]
    assert len(accepted) == FITS and len(rejected) == 20 - FITS
    assert {o["reason_code"] for o in rejected} == {"insufficient_funds"}
    total = await engine.pool.fetchval("SELECT sum(amount) FROM trading.reservations WHERE account_id = $1", account)
    assert total == PER_ORDER * FITS <= balance
    acct = (await engine.http.get(f"/api/v1/accounts/{account}", headers=headers)).json()
    assert Decimal(acct["available"]) == 100

    # Across a restart the reservations still hold (they are rows): an eighth is still refused...
    async with start_engine() as again:
        again.venue.held.update(engine.venue.held)
        r = await again.http.post("/api/v1/orders", json={**body, "limit_price": "1.00000"}, headers=headers)
        assert (r.json()["state"], r.json()["reason_code"]) == ("rejected", "insufficient_funds")
        # ... until one is canceled, which frees exactly one order's worth.
        r = await again.http.delete(f"/api/v1/orders/{accepted[0]['id']}", headers=headers)
        assert r.json()["state"] == "canceled"
        r = await again.http.post("/api/v1/orders", json={**body, "limit_price": "1.00000"}, headers=headers)
        assert r.json()["state"] == "accepted"
    total = await engine.pool.fetchval("SELECT sum(amount) FROM trading.reservations WHERE account_id = $1", account)
    assert total == PER_ORDER * FITS
