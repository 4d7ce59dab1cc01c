"""trading-engine in the running mesh, through the gateway: its areas are routed, the platform's paper
account exists, and an order is stored and answered (rejected ``venue_unavailable`` until a venue is
wired in: the engine alone never makes up an execution)."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.slow


async def test_orders_and_accounts_through_the_gateway(mesh, admin_token):
    gateway = mesh.url("api-gateway")
    async with httpx.AsyncClient(
        base_url=gateway, timeout=15, headers={"Authorization": f"Bearer {admin_token}"}
    ) as http:
        accounts = (await http.get("/api/v1/accounts")).json()["items"]
        assert "paper-platform" in {a["id"] for a in accounts}
        order = {"account_id": "paper-platform", "symbol": "EURUSD", "side": "buy", "type": "limit"}
        r = await http.post("/api/v1/orders", json={**order, "quantity": "0.10", "limit_price": "1.00000"})
        assert r.status_code == 201, r.text
        assert r.json()["state"] in ("rejected", "pending_submit", "accepted", "filled")
        if r.json()["state"] == "rejected":
            assert r.json()["reason_code"] == "venue_unavailable"
        assert (await http.get(f"/api/v1/orders/{r.json()['id']}")).json()["id"] == r.json()["id"]
        for area in ("fills", "positions"):
            assert (await http.get(f"/api/v1/{area}")).status_code == 200
        r = await http.post("/api/v1/orders", json={**order, "quantity": "0.001", "limit_price": "1.00000"})
        assert r.status_code == 422 and r.json()["detail"].startswith("body.quantity")
