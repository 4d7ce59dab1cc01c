"""An Idempotency-Key is stored naming the order it made (one statement, in the placing transaction):
the replay's Location is that order, and a replay that finds no stored answer answers that order."""

from __future__ import annotations

import uuid
from decimal import Decimal

from tests.services.trading_engine.conftest import new_account


async def test_the_key_names_its_order_and_the_replay_points_at_it(engine):
    engine.venue.mode = "accept"
    engine.state.orders.prices.update("EURUSD", 1, Decimal("1.10000"))
    account = await new_account(engine, "idem-link")
    key = f"k-{uuid.uuid4()}"
    headers = {**engine.mint("idem-link"), "Idempotency-Key": key}
    order = {"account_id": account, "symbol": "EURUSD", "side": "buy", "type": "market", "quantity": "0.10"}
    first = await engine.http.post("/api/v1/orders", json=order, headers=headers)
    assert first.status_code == 201, first.text
    made = first.json()["id"]
    stored = await engine.pool.fetchval(
        "SELECT order_id FROM trading.idempotency_keys WHERE tenant = 'idem-link' AND key = $1", key
    )
    assert str(stored) == made
    again = await engine.http.post("/api/v1/orders", json=order, headers=headers)
    assert again.headers["Location"] == f"/api/v1/orders/{made}"
    # A replay that finds no answer stored (the first request died after its commit) answers the order.
    await engine.pool.execute(
        "UPDATE trading.idempotency_keys SET status = NULL, body = NULL WHERE tenant = 'idem-link' AND key = $1", key
    )
    late = await engine.http.post("/api/v1/orders", json=order, headers=headers)
    assert late.status_code == 201 and late.json()["id"] == made
