"""The MT5 venue's link, engine side, on real PostgreSQL: commands are handed out once (again only
when unanswered), a submit nobody takes leaves the order unknown and is withdrawn after its TTL
(rejected, never executed late), reports reach the engine, reconciliation reads the snapshot."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from services.trading_engine.venues.base import VenueOrder, VenueReport, VenueTimeout
from services.trading_engine.venues.mt5 import Mt5Venue, Mt5VenueSettings
from services.trading_engine.venues.mt5_link_store import Mt5LinkStore
from shared.kit.migrations import migrate_postgres
from shared.mt5_link import (
    PLATFORM_MAGIC,
    Mt5DealView,
    Mt5Fill,
    Mt5OrderView,
    Mt5PositionView,
    Mt5Report,
    Mt5Reports,
    Mt5Snapshot,
    mt5_comment,
)
from tests.support import own_database

MIGRATIONS = Path(__file__).parents[3] / "services/trading_engine/migrations/postgres"
ACCOUNT = "mt5-1"


@pytest.fixture
async def pool(infra_env):
    _, env, _ = infra_env
    async with own_database(env["DATABASE_URL"], "mt5") as url:
        await migrate_postgres(url, "trading-engine", MIGRATIONS)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        try:
            yield pool
        finally:
            await pool.close()


class Reports:
    def __init__(self) -> None:
        self.got: list[VenueReport] = []

    async def __call__(self, report: VenueReport) -> None:
        self.got.append(report)


async def tenant_of(account_id: str) -> str | None:
    return "platform" if account_id == ACCOUNT else None


def venue(pool, sink, **settings) -> Mt5Venue:
    return Mt5Venue(Mt5LinkStore(pool), sink, tenant_of, Mt5VenueSettings(**settings))


def order(coid: str = "c-1", **kw) -> VenueOrder:
    fields = {
        "order_id": uuid.uuid4(),
        "client_order_id": coid,
        "account_id": ACCOUNT,
        "symbol": "EURUSD",
        "side": "buy",
        "type": "market",
        "quantity": Decimal("0.10"),
        "time_in_force": "gtc",
    } | kw
    return VenueOrder(**fields)  # type: ignore[arg-type]


async def test_a_submit_returns_once_the_link_took_it_and_a_second_submit_queues_nothing(pool):
    mt5 = venue(pool, Reports(), submit_timeout_s=5.0)
    taken = asyncio.create_task(mt5.take_commands("platform", [ACCOUNT], wait_s=5.0))
    await mt5.submit(order("c-1", limit_price=None))
    commands = await taken
    assert [(c.kind, c.client_order_id, c.attempt) for c in commands] == [("submit", "c-1", 1)]
    assert commands[0].order is not None and commands[0].order.quantity == Decimal("0.10")
    await mt5.submit(order("c-1"))  # the same order again: already taken, nothing new queued
    assert await mt5.take_commands("platform", [ACCOUNT], wait_s=0.2) == []
    # another tenant's link gets nothing of this account
    assert await mt5.take_commands("other", [ACCOUNT], wait_s=0.2) == []


async def test_a_submit_nobody_takes_is_unknown_then_taken_late_or_withdrawn_never_both(pool):
    reports = Reports()
    mt5 = venue(pool, reports, submit_timeout_s=0.3, command_ttl_s=3600)
    with pytest.raises(VenueTimeout):
        await mt5.submit(order("late"))
    late = await mt5.take_commands("platform", [ACCOUNT], wait_s=0.5)  # the link is back in time
    assert [c.client_order_id for c in late] == ["late"]
    # taken: past its TTL it is not withdrawn (the terminal may be executing it)
    assert await venue(pool, reports, command_ttl_s=0.0).withdraw_expired() == 0

    expiring = venue(pool, reports, submit_timeout_s=0.3, command_ttl_s=0.0)
    with pytest.raises(VenueTimeout):
        await expiring.submit(order("stale"))
    assert await expiring.withdraw_expired() == 1
    assert [(r.kind, r.client_order_id, r.reason_code) for r in reports.got] == [
        ("rejected", "stale", "venue_unreachable")
    ]
    assert await expiring.take_commands("platform", [ACCOUNT], wait_s=0.2) == []  # never executed late


async def test_an_unanswered_command_is_handed_out_again_until_answered(pool):
    reports = Reports()
    mt5 = venue(pool, reports, submit_timeout_s=2.0, redeliver_after_s=0.0)
    taker = asyncio.create_task(mt5.take_commands("platform", [ACCOUNT], wait_s=2.0))
    await mt5.submit(order("c-9"))
    assert [c.attempt for c in await taker] == [1]
    again = await mt5.take_commands("platform", [ACCOUNT], wait_s=0.5)  # the connector died holding it
    assert [(c.client_order_id, c.attempt) for c in again] == [("c-9", 2)]
    fill = Mt5Fill(
        deal_ticket="7001", quantity=Decimal("0.1"), price=Decimal("1.10012"), commission=Decimal("0.7"), time_ns=5
    )
    await mt5.accept_reports(
        Mt5Reports(
            account_id=ACCOUNT,
            reports=[
                Mt5Report(kind="accepted", client_order_id="c-9", time_ns=4, venue_order_id="501"),
                Mt5Report(kind="fill", client_order_id="c-9", time_ns=5, venue_order_id="501", fill=fill),
            ],
        )
    )
    assert [(r.kind, r.venue_order_id) for r in reports.got] == [("accepted", "501"), ("fill", "501")]
    assert reports.got[1].fill is not None and reports.got[1].fill.venue_fill_id == "7001"
    assert await mt5.take_commands("platform", [ACCOUNT], wait_s=0.3) == []  # answered: not again


async def test_reconciliation_reads_the_snapshot_and_says_when_it_cannot_tell(pool):
    mt5 = venue(pool, Reports(), submit_timeout_s=0.2, snapshot_max_age_s=60)
    with pytest.raises(VenueTimeout):  # no snapshot yet
        await mt5.order_status(ACCOUNT, "c-1")
    with pytest.raises(VenueTimeout):  # queued, nobody took it
        await mt5.submit(order("pending"))
    mine = Mt5OrderView(
        ticket="501",
        comment=mt5_comment("c-1"),
        magic=PLATFORM_MAGIC,
        symbol="EURUSD",
        side="buy",
        state="filled",
        volume_initial=Decimal("0.2"),
        volume_current=Decimal(0),
    )
    deals = [
        Mt5DealView(
            ticket=str(t),
            order_ticket="501",
            comment=mt5_comment("c-1"),
            magic=PLATFORM_MAGIC,
            symbol="EURUSD",
            side="buy",
            quantity=Decimal("0.1"),
            price=Decimal(p),
            commission=Decimal("0.7"),
            time_ns=t,
        )
        for t, p in ((7001, "1.1"), (7002, "1.2"))
    ]
    positions = [
        Mt5PositionView(
            ticket="9", symbol="EURUSD", quantity=Decimal("0.2"), price_open=Decimal("1.15"), magic=PLATFORM_MAGIC
        ),
        Mt5PositionView(ticket="10", symbol="XAUUSD", quantity=Decimal("-1"), price_open=Decimal("2000")),  # outside
    ]
    snapshot = Mt5Snapshot(account_id=ACCOUNT, taken_at_ns=4 * 10**18, orders=[mine], positions=positions, deals=deals)
    await mt5.accept_snapshot("platform", snapshot)
    await mt5.accept_snapshot("platform", snapshot.model_copy(update={"taken_at_ns": 1, "orders": []}))  # late: ignored
    status = await mt5.order_status(ACCOUNT, "c-1")
    assert (status.state, status.venue_order_id, status.filled_quantity) == ("filled", "501", Decimal("0.2"))
    assert [f.venue_fill_id for f in status.fills] == ["7001", "7002"]
    with pytest.raises(VenueTimeout):  # still on its way: the venue cannot say it does not have it
        await mt5.order_status(ACCOUNT, "pending")
    assert (await mt5.order_status(ACCOUNT, "never-sent")).state == "not_found"
    held = {p.symbol: (p.quantity, p.average_price) for p in await mt5.positions(ACCOUNT)}
    assert held == {"EURUSD": (Decimal("0.2"), Decimal("1.15")), "XAUUSD": (Decimal(-1), Decimal(2000))}
    assert [r.fill.venue_fill_id for r in await mt5.fills_since(ACCOUNT, 7002) if r.fill] == ["7002"]
    stale = venue(pool, Reports(), snapshot_max_age_s=0.0)
    await asyncio.sleep(0.01)
    with pytest.raises(VenueTimeout):
        await stale.positions(ACCOUNT)
