"""Idempotency keys of POST /orders, and tenant isolation of every route (another tenant's ids are 404)."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest

from tests.services.trading_engine.conftest import new_account


@pytest.fixture
async def account(engine):
    engine.venue.mode = "accept"
    engine.state.orders.prices.update("EURUSD", 1, Decimal("1.10000"))
    return await new_account(engine, "idem")


def limit_order(account: str, price: str = "1.05000") -> dict:
    return {
        "account_id": account,
        "symbol": "EURUSD",
        "side": "buy",
        "type": "limit",
        "quantity": "0.10",
        "limit_price": price,
    }


async def test_the_same_key_and_body_answer_the_first_answer(engine, account):
    headers = {**engine.mint("idem"), "Idempotency-Key": f"k-{uuid.uuid4()}"}
    first = await engine.http.post("/api/v1/orders", json=limit_order(account), headers=headers)
    assert first.status_code == 201
    # The order moved on since (filled): the replay is still the first answer, and no new order.
    await engine.venue.fill(account, first.json()["client_order_id"], Decimal("0.10"))
    again = await engine.http.post("/api/v1/orders", json=limit_order(account), headers=headers)
    assert (again.status_code, again.json()) == (201, first.json())
    assert await engine.pool.fetchval("SELECT count(*) FROM trading.orders WHERE account_id = $1", account) == 1
    # The same body written otherwise (key order, number spelling) is the same request.
    reordered = dict(reversed(list({**limit_order(account), "limit_price": "1.050"}.items())))
    assert (await engine.http.post("/api/v1/orders", json=reordered, headers=headers)).json() == first.json()


async def test_the_same_key_with_another_body_is_409(engine, account):
    headers = {**engine.mint("idem"), "Idempotency-Key": f"k-{uuid.uuid4()}"}
    assert (await engine.http.post("/api/v1/orders", json=limit_order(account), headers=headers)).status_code == 201
    r = await engine.http.post("/api/v1/orders", json=limit_order(account, "1.04000"), headers=headers)
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"
    assert await engine.pool.fetchval("SELECT count(*) FROM trading.orders WHERE account_id = $1", account) == 1


async def test_concurrent_requests_with_one_key_make_one_order(engine, account):
    headers = {**engine.mint("idem"), "Idempotency-Key": f"k-{uuid.uuid4()}"}
    answers = await asyncio.gather(
        *(engine.http.post("/api/v1/orders", json=limit_order(account), headers=headers) for _ in range(8))
    )
    assert {r.status_code for r in answers} == {201}
    assert len({r.json()["id"] for r in answers}) == 1
    assert await engine.pool.fetchval("SELECT count(*) FROM trading.orders WHERE account_id = $1", account) == 1
    assert engine.venue.submits >= 1 and len([h for h in engine.venue.held if h[0] == account]) == 1


async def test_keys_are_per_tenant(engine, account):
    other = await new_account(engine, "idem-other")
    key = f"k-{uuid.uuid4()}"
    a = await engine.http.post(
        "/api/v1/orders", json=limit_order(account), headers={**engine.mint("idem"), "Idempotency-Key": key}
    )
    b = await engine.http.post(
        "/api/v1/orders", json=limit_order(other), headers={**engine.mint("idem-other"), "Idempotency-Key": key}
    )
    assert a.status_code == b.status_code == 201 and a.json()["id"] != b.json()["id"]


async def test_a_client_order_id_is_unique_per_account(engine, account):
    headers = engine.mint("idem")
    body = {**limit_order(account), "client_order_id": f"c-{uuid.uuid4().hex[:8]}"}
    assert (await engine.http.post("/api/v1/orders", json=body, headers=headers)).status_code == 201
    assert (await engine.http.post("/api/v1/orders", json=body, headers=headers)).status_code == 409


async def test_another_tenants_things_are_404_on_every_route(engine, account):
    mine = engine.mint("idem")
    order = (await engine.http.post("/api/v1/orders", json=limit_order(account), headers=mine)).json()
    await engine.venue.fill(account, order["client_order_id"], Decimal("0.05"))
    theirs = engine.mint("intruder")
    await new_account(engine, "intruder")
    # Single things: 404, exactly as for an id that does not exist.
    for method, path, body in (
        ("GET", f"/api/v1/orders/{order['id']}", None),
        ("DELETE", f"/api/v1/orders/{order['id']}", None),
        ("GET", f"/api/v1/accounts/{account}", None),
        ("POST", "/api/v1/orders", limit_order(account)),
    ):
        r = await engine.http.request(method, path, json=body, headers=theirs)
        assert r.status_code == 404, (method, path, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        missing = path.replace(order["id"], str(uuid.uuid4())).replace(account, "paper-000000000000")
        missing_body = None if body is None else limit_order("paper-000000000000")
        assert (await engine.http.request(method, missing, json=missing_body, headers=theirs)).status_code == 404
    # Lists: nothing of the other tenant, even when asked for by its account id.
    for path in ("/api/v1/orders", "/api/v1/fills", "/api/v1/positions"):
        r = await engine.http.get(path, params={"account_id": account}, headers=theirs)
        assert r.status_code == 200 and r.json()["items"] == [], path
        assert (await engine.http.get(path, params={"account_id": account}, headers=mine)).json()["items"], path
    listed = (await engine.http.get("/api/v1/accounts", headers=theirs)).json()["items"]
    assert account not in {a["id"] for a in listed}
    # And the order is untouched.
    assert (await engine.http.get(f"/api/v1/orders/{order['id']}", headers=mine)).json()["state"] == "partially_filled"


async def test_accounts_are_added_by_admins_in_their_tenant(engine):
    r = await engine.http.post(
        "/api/v1/accounts",
        json={"venue": "mt5", "name": "x", "venue_account": "5001"},
        headers=engine.mint("acme", ("trade",)),
    )
    assert r.status_code == 403
    r = await engine.http.post(
        "/api/v1/accounts", json={"venue": "mt5", "name": "x", "tenant": "other"}, headers=engine.mint("acme")
    )
    assert r.status_code == 404
    r = await engine.http.post("/api/v1/accounts", json={"venue": "ftx", "name": "x"}, headers=engine.mint("acme"))
    assert r.status_code == 422 and r.json()["detail"].startswith("body.venue")
    r = await engine.http.post(
        "/api/v1/accounts", json={"venue": "mt5", "name": "x", "venue_account": "5001"}, headers=engine.mint("acme")
    )
    assert r.status_code == 201 and (r.json()["tenant"], r.json()["venue"]) == ("acme", "mt5")
    r = await engine.http.post(
        "/api/v1/accounts",
        json={"venue": "paper", "name": "y", "tenant": "acme", "balance": "10"},
        headers=engine.mint("platform"),
    )
    assert r.status_code == 201 and r.json()["tenant"] == "acme"
