"""The kill switch's sweep: ``cancel_open`` cancels every open order in scope and nothing else."""

from __future__ import annotations

from services.trading_engine.orders.models import OrderRequest
from shared.events import OrderAttribution
from tests.services.trading_engine.conftest import new_account


async def test_cancel_open_cancels_exactly_the_orders_in_scope(engine):
    engine.venue.mode = "accept"
    manager = engine.state.orders
    a1, a2 = await new_account(engine, "ks-a"), await new_account(engine, "ks-a")
    b1 = await new_account(engine, "ks-b")

    async def place(account: str, tenant: str, strategy: str | None = None):
        request = OrderRequest(
            account_id=account, symbol="EURUSD", side="buy", type="limit", quantity="0.01", limit_price="1.00000"
        )
        return await manager.place(
            request, tenant=tenant, actor="test", attribution=OrderAttribution(strategy=strategy)
        )

    rsi_a1, plain_a1 = await place(a1, "ks-a", "rsi"), await place(a1, "ks-a")
    plain_a2, rsi_b1 = await place(a2, "ks-a"), await place(b1, "ks-b", "rsi")

    async def states() -> dict:
        rows = await engine.pool.fetch(
            "SELECT id, state FROM trading.orders WHERE id = ANY($1::uuid[])",
            [o.id for o in (rsi_a1, plain_a1, plain_a2, rsi_b1)],
        )
        return {r["id"]: r["state"] for r in rows}

    assert await manager.cancel_open(tenant="ks-a", strategy="rsi") == 1
    assert (await states())[rsi_a1.id] == "canceled" and (await states())[rsi_b1.id] == "accepted"
    assert await manager.cancel_open(account_id=a2) == 1
    assert await manager.cancel_open(tenant="ks-b") == 1
    now = await states()
    assert (now[plain_a1.id], now[plain_a2.id], now[rsi_b1.id]) == ("accepted", "canceled", "canceled")
