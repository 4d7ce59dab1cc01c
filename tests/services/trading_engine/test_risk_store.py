"""Risk storage on the real PostgreSQL (no mesh): limit versions numbered per tenant and account,
current = newest, concurrent changes never collide; kill switches stored with their history, a
second trip of a tripped scope is a no-op, a reset records its person and reason or is refused."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import asyncpg
import pytest

from services.trading_engine.risk import store
from services.trading_engine.risk.kill_switch import KillSwitch, KillSwitchBoard, OrderFacts, ResetRefused, trip
from services.trading_engine.risk.limits import InvalidLimits, LimitsBook
from services.trading_engine.service import SERVICE
from shared.events import KillSwitchChanged, RiskLimitsChanged
from shared.kit.migrations import migrate_postgres
from tests.services.trading_engine.risk_support import WEDNESDAY_NS, S
from tests.support import own_database

MINE = ["trading-engine/010_risk_limits", "trading-engine/011_kill_switches"]


@pytest.fixture(scope="module")
async def pool(infra_env):
    _, env, _ = infra_env
    async with own_database(env["DATABASE_URL"], "risk") as url:
        applied = await migrate_postgres(url, SERVICE.name, SERVICE.migrations_dir("postgres"))
        assert set(MINE) <= set(applied)
        assert await migrate_postgres(url, SERVICE.name, SERVICE.migrations_dir("postgres")) == []
        pool = await asyncpg.create_pool(url, min_size=1, max_size=6)
        yield pool
        await pool.close()


def tenant() -> str:
    return "t" + uuid.uuid4().hex[:10]


async def put(pool, t, account, limits, now_ns=WEDNESDAY_NS, actor="alice", reason="why"):
    async with pool.acquire() as conn, conn.transaction():
        return await store.put_limits(
            conn, tenant=t, account_id=account, limits=limits, actor=actor, reason=reason, now_ns=now_ns
        )


async def test_limit_versions_are_numbered_per_tenant_and_account_and_current_is_the_newest(pool):
    t = tenant()
    v1, events = await put(pool, t, None, {"max_order_lots": "10"})
    assert v1.version == 1 and v1.limits["max_order_lots"] == "10" and v1.limits["price_collar_bps"] == 500
    assert isinstance(events[0], RiskLimitsChanged) and events[0].version == 1 and events[0].account_id is None
    v2, _ = await put(pool, t, None, {"max_order_lots": "20"}, now_ns=WEDNESDAY_NS + S)
    a1, events = await put(pool, t, "acc-1", {"max_order_lots": "2", "daily_loss_limit": None})
    assert (v2.version, a1.version) == (2, 1)
    assert a1.limits == {"max_order_lots": "2", "daily_loss_limit": None}  # only the overrides
    assert events[0].account_id == "acc-1"
    async with pool.acquire() as conn:
        assert await store.current_limits(conn, t) == v2
        assert await store.current_limits(conn, t, "acc-1") == a1
        assert await store.current_limits(conn, t, "acc-2") is None
        assert [v.version for v in await store.limits_history(conn, t)] == [2, 1]
        current = [v for v in await store.all_current_limits(conn) if v.tenant == t]
    assert sorted(current, key=lambda v: v.account_id or "") == [v2, a1]
    book = LimitsBook()
    book.load(current)
    assert book.limits_for(t, "acc-1").max_order_lots == Decimal(2)
    assert book.limits_for(t, "acc-9").max_order_lots == Decimal(20)


async def test_concurrent_changes_get_consecutive_versions(pool):
    t = tenant()
    results = await asyncio.gather(*(put(pool, t, None, {"max_order_lots": str(i + 1)}) for i in range(8)))
    assert sorted(v.version for v, _ in results) == list(range(1, 9))


async def test_invalid_limits_are_refused_and_nothing_is_stored(pool):
    t = tenant()
    with pytest.raises(InvalidLimits):
        await put(pool, t, None, {"max_order_value": "-5"})
    async with pool.acquire() as conn:
        assert await store.current_limits(conn, t) is None


async def test_changes_need_the_callers_transaction(pool):
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError):
            await store.put_limits(conn, tenant="x", account_id=None, limits={}, actor="a", reason=None, now_ns=1)


async def test_a_trip_cancels_in_scope_and_a_second_trip_of_the_scope_is_a_no_op(pool):
    t = tenant()
    asked: list[KillSwitch] = []

    async def cancel(conn, switch):
        asked.append(switch)
        return 3

    first = trip(scope="account", target="acc-1", tenant=t, actor="bob", reason="runaway", now_ns=WEDNESDAY_NS)
    async with pool.acquire() as conn, conn.transaction():
        tripped = await store.trip_switch(conn, first, cancel)
    assert tripped.created and tripped.switch.canceled_orders == 3 and asked == [first]
    [event] = tripped.events
    assert isinstance(event, KillSwitchChanged) and (event.state, event.canceled_orders) == ("tripped", 3)
    again = trip(
        scope="account", target="acc-1", tenant=t, actor="throttle:rejections", reason="x", now_ns=WEDNESDAY_NS + S
    )
    async with pool.acquire() as conn, conn.transaction():
        second = await store.trip_switch(conn, again, cancel)
    assert not second.created and second.events == [] and second.switch.switch_id == first.switch_id
    assert len(asked) == 1
    # another account of the tenant is another scope
    other = trip(scope="account", target="acc-2", tenant=t, actor="bob", reason="x", now_ns=WEDNESDAY_NS)
    async with pool.acquire() as conn, conn.transaction():
        assert (await store.trip_switch(conn, other)).created


async def test_reset_records_person_and_reason_keeps_history_and_allows_a_new_trip(pool):
    t = tenant()
    switch = trip(scope="tenant", target=None, tenant=t, actor="bob", reason="drill", now_ns=WEDNESDAY_NS)
    async with pool.acquire() as conn, conn.transaction():
        await store.trip_switch(conn, switch)
    for person, reason in [("", "fixed"), ("Alice", ""), (None, None)]:
        async with pool.acquire() as conn:
            with pytest.raises(ResetRefused):
                async with conn.transaction():
                    await store.reset_switch(conn, switch.switch_id, person=person, reason=reason, now_ns=WEDNESDAY_NS)
            assert (await store.get_switch(conn, switch.switch_id)).tripped
    async with pool.acquire() as conn, conn.transaction():
        _, [event] = await store.reset_switch(
            conn, switch.switch_id, person="Alice Admin", reason="drill over", now_ns=WEDNESDAY_NS + 5 * S
        )
    assert (event.state, event.actor, event.reason) == ("reset", "Alice Admin", "drill over")
    async with pool.acquire() as conn:
        stored = await store.get_switch(conn, switch.switch_id)
        assert (stored.state, stored.reset_by, stored.reset_reason, stored.reset_ns) == (
            "reset",
            "Alice Admin",
            "drill over",
            WEDNESDAY_NS + 5 * S,
        )
        with pytest.raises(ResetRefused):
            async with conn.transaction():
                await store.reset_switch(conn, switch.switch_id, person="Alice", reason="again", now_ns=WEDNESDAY_NS)
        with pytest.raises(store.SwitchNotFound):
            async with conn.transaction():
                await store.reset_switch(conn, uuid.uuid4(), person="Alice", reason="x", now_ns=WEDNESDAY_NS)
    again = trip(scope="tenant", target=None, tenant=t, actor="bob", reason="again", now_ns=WEDNESDAY_NS + 9 * S)
    async with pool.acquire() as conn, conn.transaction():
        assert (await store.trip_switch(conn, again)).created
    async with pool.acquire() as conn:
        history = await store.list_switches(conn, tenants=[t])
        assert [s.switch_id for s in history] == [again.switch_id, switch.switch_id]
        assert [s.switch_id for s in await store.list_switches(conn, tenants=[t], state="tripped")] == [again.switch_id]
        board = KillSwitchBoard()
        board.load(await store.tripped_switches(conn))
    assert board.is_blocked(OrderFacts(t, "any", "paper")).switch_id == again.switch_id
