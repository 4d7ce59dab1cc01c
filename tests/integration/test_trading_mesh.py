"""trading-engine in the running mesh (``hats up``: the simulated terminal's live ticks, the paper
venue, the risk gate), through the gateway: a market order is filled on a later tick and shows in
fills and positions; an Idempotency-Key replays it; a kill switch blocks the account's orders until
a named person resets it; a restricted symbol is refused with its reason code; a bot lives through
its lifecycle. BTCUSD trades around the clock, so the test holds on any day and hour."""

from __future__ import annotations

import uuid
from decimal import Decimal

import httpx
import pytest

from tests.support import eventually

pytestmark = pytest.mark.slow

ACCOUNT = "paper-platform"


async def test_a_market_order_fills_on_the_paper_venue_and_the_controls_hold(mesh, admin_token):
    async with httpx.AsyncClient(
        base_url=mesh.url("api-gateway"), timeout=15, headers={"Authorization": f"Bearer {admin_token}"}
    ) as http:
        accounts = (await http.get("/api/v1/accounts")).json()["items"]
        assert ACCOUNT in {a["id"] for a in accounts}
        order = {"account_id": ACCOUNT, "symbol": "BTCUSD", "side": "buy", "type": "market", "quantity": "0.01"}
        key = {"Idempotency-Key": f"mesh-{uuid.uuid4()}"}

        async def placed() -> dict | None:
            # Until the engine has seen a BTCUSD tick it has no price to reserve at (no_reference_price).
            r = await http.post("/api/v1/orders", json=order, headers=key)
            assert r.status_code == 201, r.text
            if r.json()["reason_code"] == "no_reference_price":
                key["Idempotency-Key"] = f"mesh-{uuid.uuid4()}"
                return None
            return r.json()

        first = await eventually(placed, timeout_s=60)
        assert first["state"] in ("pending_submit", "accepted", "partially_filled", "filled"), first

        async def filled() -> dict | None:
            current = (await http.get(f"/api/v1/orders/{first['id']}")).json()
            return current if current["state"] == "filled" else None

        done = await eventually(filled, timeout_s=60)
        fills = (await http.get("/api/v1/fills", params={"order_id": first["id"]})).json()["items"]
        mine = [f for f in fills if f["order_id"] == first["id"]]
        assert sum(Decimal(f["quantity"]) for f in mine) == Decimal("0.01")
        assert all(Decimal(f["commission"]) > 0 for f in mine)
        positions = (await http.get("/api/v1/positions")).json()["items"]
        assert any(p["symbol"] == "BTCUSD" and p["account_id"] == ACCOUNT for p in positions)

        again = await http.post("/api/v1/orders", json=order, headers=key)  # the same key and body
        assert again.status_code == 201 and again.json()["id"] == done["id"]
        other = await http.post("/api/v1/orders", json={**order, "quantity": "0.02"}, headers=key)
        assert other.status_code == 409

        # Kill switch on the account: new orders are refused until a named person resets it.
        r = await http.post(
            "/api/v1/kill-switches", json={"scope": "account", "target": ACCOUNT, "reason": "mesh test"}
        )
        assert r.status_code == 201, r.text
        switch = r.json()["switch_id"]
        blocked = (await http.post("/api/v1/orders", json=order)).json()
        assert (blocked["state"], blocked["reason_code"]) == ("rejected", "kill_switch")
        r = await http.post(f"/api/v1/kill-switches/{switch}/reset", json={"person": "", "reason": "done"})
        assert r.status_code == 422
        r = await http.post(
            f"/api/v1/kill-switches/{switch}/reset", json={"person": "Mesh Tester", "reason": "test over"}
        )
        assert r.status_code == 200, r.text

        # A restricted symbol, in the tenant's next limits version.
        current = (await http.get("/api/v1/risk/limits")).json()
        limits = {**current["limits"], "restricted_symbols": ["BTCUSD"]}
        r = await http.put("/api/v1/risk/limits", json={"limits": limits, "reason": "mesh test"})
        assert r.status_code == 200, r.text
        try:
            refused = (await http.post("/api/v1/orders", json=order)).json()
            assert (refused["state"], refused["reason_code"]) == ("rejected", "restricted_symbol")
        finally:
            limits["restricted_symbols"] = []
            assert (await http.put("/api/v1/risk/limits", json={"limits": limits, "reason": "undo"})).status_code == 200

        # A bot's lifecycle, on an account of its own (the first start's bots trade the default symbols).
        r = await http.post("/api/v1/accounts", json={"venue": "paper", "name": "mesh bots", "balance": "1000"})
        assert r.status_code == 201, r.text
        r = await http.post(
            "/api/v1/bots", json={"account_id": r.json()["id"], "symbol": "GBPUSD", "strategy": "signals"}
        )
        assert r.status_code == 201, r.text
        bot = r.json()["bot_id"]
        for command, state in (("start", "running"), ("pause", "paused"), ("resume", "running"), ("stop", "stopped")):
            r = await http.post(f"/api/v1/bots/{bot}/{command}")
            assert r.status_code == 200 and r.json()["state"] == state, r.text
        assert (await http.delete(f"/api/v1/bots/{bot}")).status_code in (200, 204)
