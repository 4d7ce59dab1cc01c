"""Lost answers and crash points: an order is never dropped; reconciliation moves it to the venue's truth.

* a submit whose answer was lost (``VenueTimeout``) leaves the order ``unknown``; the venue had
  taken and filled it: reconciliation applies the fill (position, balance, reservation);
* the venue never got it: after the grace it is ``rejected`` ``never_reached_venue``, its money freed;
* the process dies after committing ``pending_submit`` (before the venue got the order, or after it
  took it): the next start's reconciliation resolves both;
* the events of a committed change the broker did not take stay in the outbox until the sweep.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from tests.services.trading_engine.conftest import new_account
from tests.services.trading_engine.fake_venue import ProcessDied
from tests.support import eventually

BODY = {"symbol": "EURUSD", "side": "buy", "type": "limit", "quantity": "0.10", "limit_price": "1.10000"}


@pytest.fixture
async def account(engine):
    engine.venue.mode = "accept"
    return await new_account(engine, "recon")


async def order_of(engine, order_id: str) -> dict:
    return (await engine.http.get(f"/api/v1/orders/{order_id}", headers=engine.mint("recon"))).json()


async def reserved(engine, order_id: str) -> int:
    return await engine.pool.fetchval("SELECT count(*) FROM trading.reservations WHERE order_id = $1", order_id)


async def test_a_lost_answer_makes_the_order_unknown_and_reconciliation_finds_its_fill(engine, account):
    engine.venue.mode = "lost_answer"
    order = (
        await engine.http.post("/api/v1/orders", json={**BODY, "account_id": account}, headers=engine.mint("recon"))
    ).json()
    assert (order["state"], order["reason_code"]) == ("unknown", "venue_timeout")
    assert await reserved(engine, order["id"]) == 1  # still held: the order may be executing
    assert await engine.state.orders.reconcile() >= 1
    now = await order_of(engine, order["id"])
    assert (now["state"], now["filled_quantity"]) == ("filled", "0.10")
    assert await reserved(engine, order["id"]) == 0
    positions = await engine.pool.fetch("SELECT quantity FROM trading.positions WHERE account_id = $1", account)
    assert [p["quantity"] for p in positions] == [Decimal("0.10")]
    # A second round changes nothing (idempotent), and the venue was never asked twice.
    await engine.state.orders.reconcile()
    assert (await order_of(engine, order["id"]))["version"] == now["version"]
    assert len([k for k in engine.venue.held if k[0] == account]) == 1


async def test_an_order_that_never_reached_the_venue_is_rejected_after_the_grace(engine, account):
    engine.venue.mode = "never_arrived"
    manager = engine.state.orders
    order = (
        await engine.http.post("/api/v1/orders", json={**BODY, "account_id": account}, headers=engine.mint("recon"))
    ).json()
    assert order["state"] == "unknown"
    await manager.reconcile()
    assert (await order_of(engine, order["id"]))["state"] == "unknown"  # within the grace: maybe in flight
    real_clock = manager.clock
    manager.clock = lambda: real_clock() + manager.never_reached_grace_ns
    try:
        await manager.reconcile()
    finally:
        manager.clock = real_clock
    now = await order_of(engine, order["id"])
    assert (now["state"], now["reason_code"]) == ("rejected", "never_reached_venue")
    assert await reserved(engine, order["id"]) == 0


@pytest.mark.parametrize("death", ["die_before", "die_after"])
async def test_a_crash_between_commit_and_submit_is_resolved_by_the_next_start(engine, account, start_engine, death):
    engine.venue.mode = death
    with pytest.raises(ProcessDied):
        await engine.http.post("/api/v1/orders", json={**BODY, "account_id": account}, headers=engine.mint("recon"))
    [row] = await engine.pool.fetch(
        "SELECT id::text, state FROM trading.orders WHERE account_id = $1 ORDER BY created_at DESC LIMIT 1", account
    )
    assert row["state"] == "pending_submit"
    held = {k: v for k, v in engine.venue.held.items() if k[0] == account}
    assert len(held) == (1 if death == "die_after" else 0)
    await asyncio.sleep(0.3)  # older than the restarted engine's grace
    async with start_engine(held=held, never_reached_grace_s=0.2, submit_timeout_s=0.1) as restarted:

        async def settled() -> dict | None:
            now = await order_of(restarted, row["id"])
            return now if now["state"] in ("filled", "rejected") else None

        now = await eventually(settled, timeout_s=20)
    if death == "die_after":
        assert (now["state"], now["filled_quantity"]) == ("filled", "0.10")
    else:
        assert (now["state"], now["reason_code"]) == ("rejected", "never_reached_venue")
    assert await reserved(engine, row["id"]) == 0


class _BrokerDown:
    async def publish(self, events):
        raise ConnectionError("broker down")

    async def publish_encoded(self, records):
        raise ConnectionError("broker down")


async def test_events_the_broker_missed_wait_in_the_outbox_for_the_sweep(engine, account):
    outbox = engine.state.orders.outbox
    working = outbox.publishers
    outbox.publishers = {topic: _BrokerDown() for topic in working}
    try:
        order = (
            await engine.http.post("/api/v1/orders", json={**BODY, "account_id": account}, headers=engine.mint("recon"))
        ).json()
        await outbox.drain()  # the delivery task tried, and failed
    finally:
        outbox.publishers = working
    assert order["state"] == "accepted"  # the change committed; only its events wait
    waiting = await engine.pool.fetchval("SELECT count(*) FROM trading.outbox WHERE key = $1", account.encode())
    assert waiting == 3  # new, pending_submit, accepted
    grace, outbox.grace_s = outbox.grace_s, 0
    try:
        assert await outbox.sweep() >= 3
    finally:
        outbox.grace_s = grace
    assert await engine.pool.fetchval("SELECT count(*) FROM trading.outbox") == 0


async def test_a_report_whose_transaction_died_is_applied_once_when_delivered_again(engine, account, monkeypatch):
    """Crash point 4: the process dies inside on_report's transaction (after the fill row was written):
    everything of it rolls back, and the report delivered again is booked exactly once."""
    from services.trading_engine.orders import repository

    order = (
        await engine.http.post("/api/v1/orders", json={**BODY, "account_id": account}, headers=engine.mint("recon"))
    ).json()
    real_insert = repository.insert_fill

    async def insert_then_die(*args, **kwargs):
        await real_insert(*args, **kwargs)
        raise ProcessDied

    monkeypatch.setattr(repository, "insert_fill", insert_then_die)
    with pytest.raises(ProcessDied):
        await engine.venue.fill(account, order["client_order_id"], Decimal("0.04"))
    monkeypatch.setattr(repository, "insert_fill", real_insert)
    assert await engine.pool.fetchval("SELECT count(*) FROM trading.fills WHERE order_id = $1", order["id"]) == 0
    assert await engine.pool.fetchval("SELECT count(*) FROM trading.positions WHERE account_id = $1", account) == 0
    balance = await engine.pool.fetchval("SELECT balance FROM trading.accounts WHERE id = $1", account)
    assert balance == Decimal(100000)
    # Delivered again (the venue's at-least-once), then once more by a reconciliation.
    held = engine.venue.held[(account, order["client_order_id"])]
    from services.trading_engine.venues.base import VenueReport

    report = VenueReport("fill", account, order["client_order_id"], 1, held.venue_order_id, fill=held.fills[-1])
    assert await engine.state.orders.on_report(report) is True
    await engine.state.orders.reconcile()
    now = await order_of(engine, order["id"])
    assert (now["state"], now["filled_quantity"]) == ("partially_filled", "0.04")
    assert await engine.pool.fetchval("SELECT count(*) FROM trading.fills WHERE order_id = $1", order["id"]) == 1
    balance = await engine.pool.fetchval("SELECT balance FROM trading.accounts WHERE id = $1", account)
    assert balance == Decimal(100000) - Decimal("0.28")  # one commission of 0.04 * 7


async def test_a_cancel_the_venue_cannot_take_is_503_and_changes_nothing(engine, account):
    order = (
        await engine.http.post("/api/v1/orders", json={**BODY, "account_id": account}, headers=engine.mint("recon"))
    ).json()
    engine.venue.cancel_unreachable = True
    try:
        r = await engine.http.delete(f"/api/v1/orders/{order['id']}", headers=engine.mint("recon"))
    finally:
        engine.venue.cancel_unreachable = False
    assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"
    assert (await order_of(engine, order["id"]))["state"] == "accepted"


async def test_a_venue_that_never_answers_leaves_the_order_unknown(engine, account):
    manager = engine.state.orders
    engine.venue.mode = "hang"
    timeout, manager.submit_timeout_s = manager.submit_timeout_s, 0.3
    try:
        order = (
            await engine.http.post("/api/v1/orders", json={**BODY, "account_id": account}, headers=engine.mint("recon"))
        ).json()
    finally:
        manager.submit_timeout_s = timeout
    assert (order["state"], order["reason_code"]) == ("unknown", "venue_timeout")
    engine.venue.mode = "accept"
    await manager.reconcile()  # the venue had taken it: accepted, the lost answer forgotten
    now = await order_of(engine, order["id"])
    assert (now["state"], now["reason_code"]) == ("accepted", None)


async def test_a_replay_of_a_request_that_died_answers_the_order_as_it_stands(engine, account, start_engine):
    headers = {**engine.mint("recon"), "Idempotency-Key": "died-once"}
    engine.venue.mode = "die_before"
    with pytest.raises(ProcessDied):
        await engine.http.post("/api/v1/orders", json={**BODY, "account_id": account}, headers=headers)
    # The client retries against the restarted engine: no answer was stored, the order exists.
    async with start_engine(idempotency_wait_s=0.2, reconcile_interval_s=3600.0) as restarted:
        first = await restarted.http.post("/api/v1/orders", json={**BODY, "account_id": account}, headers=headers)
        again = await restarted.http.post("/api/v1/orders", json={**BODY, "account_id": account}, headers=headers)
        assert restarted.venue.submits == 0  # never submitted late
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert first.json()["state"] in (
        "pending_submit",
        "rejected",
    )  # as it stood (the start's reconciliation may have run)
    count = await engine.pool.fetchval(
        "SELECT count(*) FROM trading.idempotency_keys k JOIN trading.orders o ON o.id = k.order_id"
        " WHERE k.key = 'died-once'"
    )
    assert count == 1


async def test_position_drift_shows_what_the_engine_has_not_seen(engine, account):
    headers = engine.mint("recon")
    engine.venue.mode = "fill"
    await engine.http.post("/api/v1/orders", json={**BODY, "account_id": account}, headers=headers)
    assert (await engine.http.get("/api/v1/positions/drift", headers=headers)).json()["items"] == []
    # A fill the engine never heard of (its report lost): the venue holds more than the engine.
    engine.venue.mode = "lost_answer"
    order = (await engine.http.post("/api/v1/orders", json={**BODY, "account_id": account}, headers=headers)).json()
    drift = (await engine.http.get("/api/v1/positions/drift", headers=headers)).json()["items"]
    assert drift == [{"account_id": account, "symbol": "EURUSD", "engine": "0.10", "venue": "0.20"}]
    # Another tenant sees none of it; reconciliation closes the gap.
    assert (await engine.http.get("/api/v1/positions/drift", headers=engine.mint("other"))).json()["items"] == []
    await engine.state.orders.reconcile()
    assert (await order_of(engine, order["id"]))["state"] == "filled"
    assert (await engine.http.get("/api/v1/positions/drift", headers=headers)).json()["items"] == []
