"""RiskControls: the engine's one risk object, loaded from the real PostgreSQL and kept current by
the events: limits reach the gate, a throttle trip stored and applied blocks the account."""

from __future__ import annotations

import re
from decimal import Decimal

import asyncpg
import pytest

from services.trading_engine.risk import store
from services.trading_engine.risk.checks import Reason
from services.trading_engine.risk.controls import RiskControls
from services.trading_engine.risk.kill_switch import reset
from services.trading_engine.service import SERVICE
from shared.kit.migrations import migrate_postgres
from tests.services.trading_engine.risk_support import WEDNESDAY_NS, S, context, order
from tests.support import own_database


def test_every_reason_code_fits_the_order_events_reason_code():
    codes = [v for k, v in vars(Reason).items() if k.isupper()]
    assert len(codes) == len(set(codes)) == 18
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", c) and len(c) <= 48 for c in codes)


@pytest.fixture(scope="module")
async def pool(infra_env):
    _, env, _ = infra_env
    async with own_database(env["DATABASE_URL"], "riskctl") as url:
        await migrate_postgres(url, SERVICE.name, SERVICE.migrations_dir("postgres"))
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        yield pool
        await pool.close()


async def test_loaded_limits_reach_the_gate_and_a_throttle_trip_blocks_the_account(pool):
    async with pool.acquire() as conn, conn.transaction():
        await store.put_limits(
            conn,
            tenant="acme",
            account_id=None,
            limits={"max_order_lots": "2", "throttle_rejections": 2, "throttle_window_s": 60},
            actor="alice",
            reason="r",
            now_ns=WEDNESDAY_NS,
        )
    controls = RiskControls()
    async with pool.acquire() as conn:
        await controls.load(conn)
    lim = controls.limits_for("acme", "acc-1")
    assert lim.max_order_lots == Decimal(2)
    big = order(quantity=Decimal(3))
    decision = controls.evaluate(big, context(lim))
    assert decision.codes == [Reason.MAX_ORDER_VOLUME]
    assert controls.rejected("acme", "acc-1", decision.codes[0], WEDNESDAY_NS) is None
    switch = controls.rejected("acme", "acc-1", Reason.PRICE_COLLAR, WEDNESDAY_NS + S)
    assert switch is not None
    async with pool.acquire() as conn, conn.transaction():
        tripped = await store.trip_switch(conn, switch)
    for event in tripped.events:
        controls.apply(event)
    small = order(quantity=Decimal(1))
    assert controls.evaluate(small, context(lim, now_ns=WEDNESDAY_NS + 2 * S)).codes == [Reason.KILL_SWITCH]
    # a restart loads the tripped switch; its reset event lifts it
    again = RiskControls()
    async with pool.acquire() as conn:
        await again.load(conn)
    assert again.evaluate(small, context(lim, now_ns=WEDNESDAY_NS + 3 * S)).codes == [Reason.KILL_SWITCH]
    again.apply(reset(tripped.switch, person="Alice", reason="ok", now_ns=WEDNESDAY_NS + 4 * S).event())
    assert again.evaluate(small, context(lim, now_ns=WEDNESDAY_NS + 5 * S)).accepted
