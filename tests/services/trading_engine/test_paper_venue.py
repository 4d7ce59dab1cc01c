"""The paper venue on the real PostgreSQL (no mesh): every order type and time in force against
ticks, prices with extra spread, slippage and commission computed by hand, partial fills, latency,
duplicate submits, restarts, a sink that raises, netting positions and the simulated faults.

Every price and fee below is worked out by hand in the test (Decimal, exact), not by the venue's code.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal

import asyncpg
import pytest

from services.trading_engine.service import SERVICE
from services.trading_engine.venues import paper_store
from services.trading_engine.venues.base import (
    VenueOrder,
    VenuePosition,
    VenueReport,
    VenueTimeout,
    VenueUnreachable,
)
from services.trading_engine.venues.paper import PaperVenue, PaperVenueSettings
from shared.kit.migrations import migrate_postgres
from tests.support import own_database

D = Decimal
MS = 1_000_000


def utc_ns(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC).timestamp()) * 1_000_000_000


#: Wednesday 2026-01-07 10:00 UTC: the FX and metal sessions are open.
T0 = utc_ns(2026, 1, 7, 10)
ACCOUNT = "paper-1"


@pytest.fixture(scope="module")
async def pool(infra_env) -> AsyncIterator[asyncpg.Pool]:
    _, env, _ = infra_env
    async with own_database(env["DATABASE_URL"], "paper") as url:
        applied = await migrate_postgres(url, SERVICE.name, SERVICE.migrations_dir("postgres"))
        assert "trading-engine/040_paper_venue" in applied
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        yield pool
        await pool.close()


@pytest.fixture(autouse=True)
async def empty_tables(pool) -> None:
    await pool.execute(
        "TRUNCATE trading.paper_reports, trading.paper_deals, trading.paper_positions, trading.paper_orders"
    )


@dataclass
class Clock:
    now: int = T0

    def __call__(self) -> int:
        return self.now


@dataclass
class Sink:
    """Collects the reports; raises instead while ``failing``."""

    reports: list[VenueReport] = field(default_factory=list)
    failing: bool = False
    #: (client order id, kind) of reports refused once each.
    refuse_once: set[tuple[str, str]] = field(default_factory=set)

    async def __call__(self, report: VenueReport) -> None:
        if self.failing:
            raise RuntimeError("the engine is down")
        if (report.client_order_id, report.kind) in self.refuse_once:
            self.refuse_once.discard((report.client_order_id, report.kind))
            raise RuntimeError("the engine failed on this report")
        self.reports.append(report)

    def kinds(self, client_order_id: str) -> list[str]:
        return [r.kind for r in self.reports if r.client_order_id == client_order_id]

    def fills(self, client_order_id: str) -> list[tuple[Decimal, Decimal, Decimal]]:
        return [
            (r.fill.quantity, r.fill.price, r.fill.commission)
            for r in self.reports
            if r.client_order_id == client_order_id and r.fill is not None
        ]


@dataclass
class Setup:
    venue: PaperVenue
    clock: Clock
    sink: Sink


@pytest.fixture
def make(pool):
    def build(clock: Clock | None = None, sink: Sink | None = None, **settings) -> Setup:
        clock, sink = clock or Clock(), sink or Sink()
        return Setup(PaperVenue(pool, PaperVenueSettings(**settings), clock, sink), clock, sink)

    return build


def order(
    coid: str,
    side: str = "buy",
    type: str = "market",
    quantity: str = "1",
    tif: str = "gtc",
    *,
    symbol: str = "EURUSD",
    limit: str | None = None,
    stop: str | None = None,
    account: str = ACCOUNT,
) -> VenueOrder:
    return VenueOrder(
        order_id=uuid.uuid4(),
        client_order_id=coid,
        account_id=account,
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        type=type,  # type: ignore[arg-type]
        quantity=D(quantity),
        time_in_force=tif,  # type: ignore[arg-type]
        limit_price=D(limit) if limit else None,
        stop_price=D(stop) if stop else None,
    )


async def tick(s: Setup, bid: str, ask: str, after_ms: int = 1, symbol: str = "EURUSD") -> int:
    """A tick ``after_ms`` after the clock's now (the clock moves to it); its time."""
    s.clock.now += after_ms * MS
    await s.venue.on_tick(symbol, D(bid), D(ask), s.clock.now)
    return s.clock.now


# -- market orders: prices and fees ----------------------------------------------------------------


async def test_market_orders_fill_at_the_far_side_with_extra_spread_slippage_and_commission(make):
    s = make(extra_spread_points=D(3), slippage_bps=D(2), commission_per_lot=D("3.5"), commission_bps=D("0.5"))
    await s.venue.submit(order("b1", "buy", quantity="0.30"))
    await s.venue.submit(order("s1", "sell", quantity="0.20"))
    assert s.sink.kinds("b1") == ["accepted"] and s.sink.fills("b1") == []  # nothing before a tick
    t = await tick(s, "1.10000", "1.10010")
    # Venue quote: ask 1.10010 + 1.5 points = 1.100115, up to the point: 1.10012; bid 1.099985 down: 1.09998.
    # Buy: 1.10012 * 1.0002 = 1.100340024, up to the point: 1.10035.
    # Commission: 3.5 * 0.30 + 0.00005 * (0.30 * 100000 * 1.10035) = 1.05 + 1.650525 = 2.700525 -> 2.70.
    assert s.sink.fills("b1") == [(D("0.30"), D("1.10035"), D("2.70"))]
    # Sell: 1.09998 * 0.9998 = 1.099760004, down to the point: 1.09976.
    # Commission: 3.5 * 0.20 + 0.00005 * (0.20 * 100000 * 1.09976) = 0.70 + 1.099760 = 1.79976 -> 1.80.
    assert s.sink.fills("s1") == [(D("0.20"), D("1.09976"), D("1.80"))]
    assert s.sink.kinds("b1") == ["accepted", "fill"]
    fill = s.sink.reports[-1]
    assert fill.ts_ns == t and fill.fill is not None and fill.fill.ts_ns == t
    status = await s.venue.order_status(ACCOUNT, "b1")
    assert (status.state, status.filled_quantity, len(status.fills)) == ("filled", D("0.30"), 1)
    # Netting: +0.30 @ 1.10035 then -0.20: +0.10 left at the same average.
    assert await s.venue.positions(ACCOUNT) == [VenuePosition(ACCOUNT, "EURUSD", D("0.10"), D("1.10035"))]


async def test_an_order_fills_only_on_a_tick_at_or_after_submit_plus_latency(make):
    s = make(latency_ms=50)
    await s.venue.submit(order("late"))
    await tick(s, "1.10000", "1.10010", after_ms=49)
    assert s.sink.fills("late") == []
    assert (await s.venue.order_status(ACCOUNT, "late")).state == "accepted"
    await tick(s, "1.10020", "1.10030", after_ms=1)  # exactly submit + 50 ms: the next quote's ask
    assert s.sink.fills("late") == [(D(1), D("1.10030"), D(0))]


async def test_a_tick_older_than_the_submit_does_not_fill(make):
    s = make()
    await s.venue.submit(order("m"))
    await s.venue.on_tick("EURUSD", D("1.1"), D("1.1001"), T0 - 1)
    assert s.sink.fills("m") == []


# -- limits and stops ------------------------------------------------------------------------------


async def test_limit_orders_fill_only_at_their_price_or_better(make):
    s = make(slippage_bps=D(50))  # limits never slip
    await s.venue.submit(order("lb", "buy", "limit", limit="1.10000"))
    await s.venue.submit(order("ls", "sell", "limit", limit="1.20000"))
    await tick(s, "1.10000", "1.10001")  # ask above the buy limit, bid below the sell limit
    assert s.sink.fills("lb") == [] and s.sink.fills("ls") == []
    await tick(s, "1.09990", "1.10000")  # ask at the limit (an ask under it fills at the ask: see the restart test)
    assert s.sink.fills("lb") == [(D(1), D("1.10000"), D(0))]
    await tick(s, "1.20000", "1.20010")  # bid at the limit: at the limit
    assert s.sink.fills("ls") == [(D(1), D("1.20000"), D(0))]


async def test_a_limit_sell_fills_at_a_bid_above_its_limit(make):
    s = make()
    await s.venue.submit(order("ls", "sell", "limit", limit="1.10000"))
    await tick(s, "1.10050", "1.10060")
    assert s.sink.fills("ls") == [(D(1), D("1.10050"), D(0))]


async def test_stops_trigger_on_the_touching_side_and_execute_as_market(make):
    s = make(slippage_bps=D(1))
    await s.venue.submit(order("sb", "buy", "stop", stop="1.10100"))
    await s.venue.submit(order("ss", "sell", "stop", stop="1.09900"))
    await tick(s, "1.10000", "1.10099")
    assert s.sink.fills("sb") == [] and s.sink.fills("ss") == []
    await tick(s, "1.10090", "1.10100")  # ask reaches the buy stop
    # 1.10100 * 1.0001 = 1.10111010, up to the point: 1.10112.
    assert s.sink.fills("sb") == [(D(1), D("1.10112"), D(0))]
    assert s.sink.fills("ss") == []
    await tick(s, "1.09900", "1.09910")  # the bid reaches the sell stop (the ask does not)
    # 1.09900 * 0.9999 = 1.0988901, down to the point: 1.09889.
    assert s.sink.fills("ss") == [(D(1), D("1.09889"), D(0))]


async def test_a_triggered_stop_keeps_filling_as_market_when_the_price_moves_back(make):
    s = make(partial_fill_ratio=D("0.5"))
    await s.venue.submit(order("st", "buy", "stop", "0.02", stop="1.10100"))
    await tick(s, "1.10090", "1.10100")  # triggered: half of it fills
    await tick(s, "1.10000", "1.10010")  # back under the stop: still a market order now
    assert s.sink.fills("st") == [(D("0.01"), D("1.10100"), D(0)), (D("0.01"), D("1.10010"), D(0))]


async def test_a_triggered_stop_limit_rests_as_a_limit_across_a_restart(make, pool):
    s = make()
    await s.venue.submit(order("sl", "buy", "stop_limit", stop="1.10100", limit="1.10050"))
    await tick(s, "1.10000", "1.10050")  # ask under the stop: not triggered, though the limit is reachable
    assert s.sink.fills("sl") == []
    await tick(s, "1.10100", "1.10110")  # triggered; the limit 1.10050 is not reachable now
    assert s.sink.fills("sl") == []
    assert await pool.fetchval("SELECT triggered FROM trading.paper_orders WHERE client_order_id = 'sl'")
    restarted = make(clock=s.clock)  # a new process on the same tables
    await tick(restarted, "1.10030", "1.10040")  # under the stop again: as a limit now, it fills
    assert restarted.sink.fills("sl") == [(D(1), D("1.10040"), D(0))]


# -- partial fills and times in force --------------------------------------------------------------


async def test_partial_fills_take_a_share_per_tick_in_whole_steps_and_sum_to_the_quantity(make):
    s = make(partial_fill_ratio=D("0.4"))
    await s.venue.submit(order("p", quantity="1.00"))
    states = []
    for _ in range(12):
        await tick(s, "1.10000", "1.10010")
        states.append((await s.venue.order_status(ACCOUNT, "p")).state)
    fills = [q for q, _, _ in s.sink.fills("p")]
    # 40% of what remains, down to 0.01 lots, at least 0.01: 0.40, 0.24 (of 0.60), 0.14 (of 0.36), ...
    assert fills[:4] == [D("0.40"), D("0.24"), D("0.14"), D("0.08")]
    assert sum(fills) == D("1.00") and all(q >= D("0.01") and q % D("0.01") == 0 for q in fills)
    assert states[0] == "partially_filled" and states[-1] == "filled"
    status = await s.venue.order_status(ACCOUNT, "p")
    assert [f.venue_fill_id for f in status.fills] == [f"{status.venue_order_id}-{n}" for n in range(1, len(fills) + 1)]
    assert status.filled_quantity == D("1.00") and s.sink.kinds("p")[-1] == "fill"


async def test_a_fill_is_never_smaller_than_the_volume_step(make):
    s = make(partial_fill_ratio=D("0.1"))
    await s.venue.submit(order("tiny", quantity="0.02"))
    await tick(s, "1.10000", "1.10010")
    await tick(s, "1.10000", "1.10010")
    assert [q for q, _, _ in s.sink.fills("tiny")] == [D("0.01"), D("0.01")]
    assert (await s.venue.order_status(ACCOUNT, "tiny")).state == "filled"


async def test_ioc_fills_what_its_first_tick_allows_and_cancels_the_rest(make):
    s = make(partial_fill_ratio=D("0.5"))
    await s.venue.submit(order("ioc", quantity="1.00", tif="ioc"))
    await s.venue.submit(order("ioc-away", "buy", "limit", "1.00", "ioc", limit="1.00000"))
    await tick(s, "1.10000", "1.10010")
    await tick(s, "1.10000", "1.10010")
    assert s.sink.fills("ioc") == [(D("0.50"), D("1.10010"), D(0))]
    assert s.sink.kinds("ioc") == ["accepted", "fill", "canceled"]
    status = await s.venue.order_status(ACCOUNT, "ioc")
    assert (status.state, status.filled_quantity, status.reason_code) == ("canceled", D("0.50"), "ioc_remainder")
    away = await s.venue.order_status(ACCOUNT, "ioc-away")
    assert (away.state, away.filled_quantity, away.reason_code) == ("canceled", D(0), "ioc_not_marketable")


async def test_fok_fills_all_on_its_first_tick_or_nothing(make):
    partial = make(partial_fill_ratio=D("0.5"))
    await partial.venue.submit(order("fok-thin", quantity="1.00", tif="fok"))
    await partial.venue.submit(order("fok-away", "sell", "limit", "1.00", "fok", limit="2.00000"))
    await tick(partial, "1.10000", "1.10010")
    for coid, code in (("fok-thin", "fok_not_filled"), ("fok-away", "fok_not_filled")):
        status = await partial.venue.order_status(ACCOUNT, coid)
        assert (status.state, status.filled_quantity, status.reason_code) == ("canceled", D(0), code)
        assert partial.sink.kinds(coid) == ["accepted", "canceled"]
    whole = make(clock=partial.clock)
    await whole.venue.submit(order("fok-ok", quantity="1.00", tif="fok"))
    await tick(whole, "1.10000", "1.10010")
    assert whole.sink.fills("fok-ok") == [(D("1.00"), D("1.10010"), D(0))]
    assert (await whole.venue.order_status(ACCOUNT, "fok-ok")).state == "filled"


async def test_a_day_order_expires_at_the_end_of_its_trading_day_by_tick_time(make):
    s = make()
    await s.venue.submit(order("day", "buy", "limit", tif="day", limit="1.00000"))
    await s.venue.submit(order("gtc", "buy", "limit", tif="gtc", limit="1.00000"))
    s.clock.now = utc_ns(2026, 1, 7, 22) - 2 * MS
    await tick(s, "1.10000", "1.10010")  # 21:59:59.999: still its day
    assert (await s.venue.order_status(ACCOUNT, "day")).state == "accepted"
    await tick(s, "1.10000", "1.10010")  # 22:00 UTC: the FX day rolls over
    status = await s.venue.order_status(ACCOUNT, "day")
    assert (status.state, status.reason_code) == ("expired", "day_ended")
    assert s.sink.kinds("day") == ["accepted", "expired"]
    assert s.sink.reports[-1].ts_ns == utc_ns(2026, 1, 7, 22)
    assert (await s.venue.order_status(ACCOUNT, "gtc")).state == "accepted"  # gtc stays


async def test_a_day_order_expires_by_the_clock_when_its_market_closes(make):
    s = make()
    await s.venue.submit(order("gold", "buy", "limit", symbol="XAUUSD", tif="day", limit="1000.00"))
    s.clock.now = utc_ns(2026, 1, 7, 20, 59)
    await s.venue.expire_due()
    assert (await s.venue.order_status(ACCOUNT, "gold")).state == "accepted"
    s.clock.now = utc_ns(2026, 1, 7, 21)  # gold's daily pause: no tick will come
    await s.venue.expire_due()
    assert (await s.venue.order_status(ACCOUNT, "gold")).state == "expired"
    assert s.sink.kinds("gold") == ["accepted", "expired"]


async def test_a_partly_filled_day_order_expires_with_its_fills_kept(make):
    s = make(partial_fill_ratio=D("0.5"))
    await s.venue.submit(order("half", quantity="1.00", tif="day"))
    await tick(s, "1.10000", "1.10010")
    s.clock.now = utc_ns(2026, 1, 7, 22)
    await s.venue.expire_due()
    status = await s.venue.order_status(ACCOUNT, "half")
    assert (status.state, status.filled_quantity, len(status.fills)) == ("expired", D("0.50"), 1)
    assert s.sink.kinds("half") == ["accepted", "fill", "expired"]
    assert await s.venue.positions(ACCOUNT) == [VenuePosition(ACCOUNT, "EURUSD", D("0.50"), D("1.10010"))]


# -- rejections, duplicates, cancels ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (order("r", symbol="DOGEUSD"), "unknown_symbol"),
        (order("r", quantity="0.015"), "invalid_volume"),
        (order("r", quantity="0.001"), "invalid_volume"),
        (order("r", type="limit"), "invalid_price"),
        (order("r", type="stop_limit", stop="1.1"), "invalid_price"),
    ],
)
async def test_orders_the_venue_cannot_take_are_rejected(make, bad, code):
    s = make()
    await s.venue.submit(bad)
    assert [(r.kind, r.reason_code) for r in s.sink.reports] == [("rejected", code)]
    assert s.sink.reports[0].reason
    status = await s.venue.order_status(ACCOUNT, "r")
    assert (status.state, status.reason_code) == ("rejected", code)
    await tick(s, "1.10000", "1.10010")
    assert s.sink.fills("r") == [] and await s.venue.open_orders(ACCOUNT) == []


async def test_a_second_submit_of_a_client_order_id_changes_nothing(make, pool):
    s = make()
    await s.venue.submit(order("dup", quantity="1.00"))
    await s.venue.submit(order("dup", quantity="2.00"))  # same id, other content: still the first order
    await tick(s, "1.10000", "1.10010")
    await s.venue.submit(order("dup", quantity="1.00"))  # after it filled: no second order either
    await tick(s, "1.10000", "1.10010")
    assert s.sink.kinds("dup") == ["accepted", "fill"]
    assert s.sink.fills("dup") == [(D("1.00"), D("1.10010"), D(0))]
    assert await pool.fetchval("SELECT count(*) FROM trading.paper_orders") == 1
    # The same client order id in another account is another order.
    await s.venue.submit(order("dup", account="paper-2"))
    assert (await s.venue.order_status("paper-2", "dup")).state == "accepted"


async def test_concurrent_duplicate_submits_make_one_order(make, pool):
    s = make()
    await asyncio.gather(*(s.venue.submit(order("race", quantity="0.10")) for _ in range(6)))
    assert s.sink.kinds("race") == ["accepted"]
    assert await pool.fetchval("SELECT count(*) FROM trading.paper_orders") == 1


async def test_a_cancel_racing_a_fill_ends_each_order_one_way_only(make):
    s = make()
    coids = [f"c{i}" for i in range(20)]
    for coid in coids:
        await s.venue.submit(order(coid, "buy", "limit", "0.10", limit="1.10000"))
    s.clock.now += MS
    await asyncio.gather(
        s.venue.on_tick("EURUSD", D("1.09990"), D("1.10000"), s.clock.now),
        *(s.venue.cancel(ACCOUNT, coid) for coid in coids),
    )
    for coid in coids:
        status = await s.venue.order_status(ACCOUNT, coid)
        outcome = s.sink.kinds(coid)[1:]
        assert (status.state, outcome) in ((("filled", ["fill"]), ("canceled", ["canceled"]))), (coid, outcome)
        assert status.filled_quantity == (D("0.10") if status.state == "filled" else D(0))
    filled = sum(1 for r in s.sink.reports if r.kind == "fill")
    assert await s.venue.positions(ACCOUNT) == (
        [VenuePosition(ACCOUNT, "EURUSD", D("0.10") * filled, D("1.10000"))] if filled else []
    )


async def test_cancel_closes_an_open_order_and_leaves_a_finished_one_alone(make):
    s = make()
    await s.venue.submit(order("rest", "buy", "limit", limit="1.00000"))
    await s.venue.submit(order("done"))
    await tick(s, "1.10000", "1.10010")
    await s.venue.cancel(ACCOUNT, "rest")
    await s.venue.cancel(ACCOUNT, "done")
    await s.venue.cancel(ACCOUNT, "never-sent")
    assert s.sink.kinds("rest") == ["accepted", "canceled"]
    assert s.sink.kinds("done") == ["accepted", "fill"]
    assert (await s.venue.order_status(ACCOUNT, "rest")).reason_code == "canceled_by_request"
    assert (await s.venue.order_status(ACCOUNT, "never-sent")).state == "not_found"
    await tick(s, "0.99000", "0.99010")  # a canceled limit never fills
    assert s.sink.fills("rest") == []


# -- restarts, lost reports, reconciliation --------------------------------------------------------


async def test_resting_orders_survive_a_restart_and_keep_working(make):
    s = make()
    await s.venue.submit(order("limit", "buy", "limit", limit="1.09000"))
    await s.venue.submit(order("stop", "sell", "stop", stop="1.08000"))
    await tick(s, "1.10000", "1.10010")
    restarted = make(clock=s.clock)
    assert {o.client_order_id for o in await restarted.venue.open_orders(ACCOUNT)} == {"limit", "stop"}
    await tick(restarted, "1.08950", "1.08960")
    await tick(restarted, "1.07990", "1.08000")
    assert restarted.sink.fills("limit") == [(D(1), D("1.08960"), D(0))]
    assert restarted.sink.fills("stop") == [(D(1), D("1.07990"), D(0))]
    assert await restarted.venue.open_orders(ACCOUNT) == []


async def test_reconciliation_tells_the_whole_truth_when_the_sink_raised_and_owed_reports_follow(make, pool):
    sink = Sink(failing=True)
    s = make(sink=sink, partial_fill_ratio=D("0.5"))
    await s.venue.submit(order("a", quantity="0.02"))  # 0.01 lots per tick
    await s.venue.submit(order("b", "buy", "limit", limit="1.00000"))
    t1 = await tick(s, "1.10000", "1.10010")
    t2 = await tick(s, "1.10020", "1.10030")
    assert sink.reports == []
    # The venue's truth, from its tables.
    a = await s.venue.order_status(ACCOUNT, "a")
    assert (a.state, a.filled_quantity) == ("filled", D("0.02"))
    assert [(f.quantity, f.price, f.ts_ns) for f in a.fills] == [
        (D("0.01"), D("1.10010"), t1),
        (D("0.01"), D("1.10030"), t2),
    ]
    assert [o.client_order_id for o in await s.venue.open_orders(ACCOUNT)] == ["b"]
    assert await s.venue.positions(ACCOUNT) == [VenuePosition(ACCOUNT, "EURUSD", D("0.02"), D("1.10020"))]
    assert [r.fill.venue_fill_id for r in await s.venue.fills_since(ACCOUNT, t2) if r.fill] == [
        a.fills[1].venue_fill_id
    ]
    assert len(await s.venue.fills_since(ACCOUNT, t1)) == 2
    # A new process delivers what was owed, in order, once.
    restarted = make(clock=s.clock)
    assert await restarted.venue.deliver_pending() == 4
    assert [(r.client_order_id, r.kind) for r in restarted.sink.reports] == [
        ("a", "accepted"),
        ("b", "accepted"),
        ("a", "fill"),
        ("a", "fill"),
    ]
    assert [f.venue_fill_id for f in a.fills] == [r.fill.venue_fill_id for r in restarted.sink.reports if r.fill]
    assert await restarted.venue.deliver_pending() == 0
    assert await pool.fetchval("SELECT count(*) FROM trading.paper_reports") == 0  # the outbox is emptied
    await restarted.venue.submit(order("c"))
    assert [r.client_order_id for r in restarted.sink.reports][-1] == "c"  # nothing delivered twice
    assert len(restarted.sink.reports) == 5


async def test_a_sink_that_recovers_gets_the_owed_reports_on_the_next_pass(make):
    sink = Sink(failing=True)
    s = make(sink=sink)
    await s.venue.submit(order("x"))
    sink.failing = False
    await tick(s, "1.10000", "1.10010")  # this pass delivers the owed acceptance before the fill
    assert sink.kinds("x") == ["accepted", "fill"]


async def test_a_refused_report_holds_back_the_later_reports_of_its_order_only(make):
    sink = Sink(failing=True)
    s = make(sink=sink)
    await s.venue.submit(order("x"))
    await s.venue.submit(order("y"))
    await tick(s, "1.10000", "1.10010")  # both fill; every report is owed
    sink.failing, sink.refuse_once = False, {("x", "accepted")}
    assert await s.venue.deliver_pending() == 2
    assert sink.kinds("y") == ["accepted", "fill"] and sink.kinds("x") == []  # x's fill waits behind it
    await s.venue.deliver_pending()
    assert sink.kinds("x") == ["accepted", "fill"]


async def test_a_fill_that_fails_half_way_leaves_nothing_behind(make, monkeypatch):
    s = make()
    await s.venue.submit(order("atomic", quantity="0.50"))

    async def broken(*args, **kwargs):
        raise ConnectionError("the database went away mid-fill")

    monkeypatch.setattr(paper_store, "save_position", broken)
    with pytest.raises(ConnectionError):
        await tick(s, "1.10000", "1.10010")
    status = await s.venue.order_status(ACCOUNT, "atomic")  # no deal, no progress, no report
    assert (status.state, status.filled_quantity, status.fills) == ("accepted", D(0), ())
    assert await s.venue.fills_since(ACCOUNT, 0) == [] and s.sink.kinds("atomic") == ["accepted"]
    monkeypatch.undo()
    await tick(s, "1.10000", "1.10010")  # the next tick fills it, once, as its first deal
    status = await s.venue.order_status(ACCOUNT, "atomic")
    assert [f.venue_fill_id for f in status.fills] == [f"{status.venue_order_id}-1"]
    assert await s.venue.positions(ACCOUNT) == [VenuePosition(ACCOUNT, "EURUSD", D("0.50"), D("1.10010"))]


@dataclass
class CancelOnAccept(Sink):
    """The engine reacting at once: it cancels each order as its acceptance arrives."""

    venue: PaperVenue | None = None

    async def __call__(self, report: VenueReport) -> None:
        await super().__call__(report)
        if report.kind == "accepted" and self.venue is not None:
            await self.venue.cancel(report.account_id, report.client_order_id)


async def test_a_sink_that_calls_the_venue_back_does_not_deadlock(make):
    sink = CancelOnAccept()
    s = make(sink=sink)
    sink.venue = s.venue
    await asyncio.wait_for(s.venue.submit(order("back", "buy", "limit", limit="1.00000")), timeout=10)
    assert sink.kinds("back") == ["accepted", "canceled"]  # the running pass delivered the cancel too


# -- positions ------------------------------------------------------------------------------------


async def test_positions_net_per_symbol_with_an_average_price(make, pool):
    s = make()

    async def trade(coid: str, side: str, lots: str, price: str) -> None:
        await s.venue.submit(order(coid, side, quantity=lots))
        await tick(s, price, price)  # bid = ask: the fill is at ``price`` either way

    await trade("open", "buy", "1.00", "1.10000")
    await trade("add", "buy", "1.00", "1.20000")
    assert await s.venue.positions(ACCOUNT) == [VenuePosition(ACCOUNT, "EURUSD", D("2.00"), D("1.15000"))]
    await trade("reduce", "sell", "0.50", "1.30000")
    assert await s.venue.positions(ACCOUNT) == [VenuePosition(ACCOUNT, "EURUSD", D("1.50"), D("1.15000"))]
    await trade("flip", "sell", "2.50", "1.25000")
    assert await s.venue.positions(ACCOUNT) == [VenuePosition(ACCOUNT, "EURUSD", D("-1.00"), D("1.25000"))]
    # Realised: 0.50 * 100000 * (1.30 - 1.15) + 1.50 * 100000 * (1.25 - 1.15) = 7500 + 15000.
    assert await pool.fetchval("SELECT realized_pnl FROM trading.paper_positions") == D("22500")
    await trade("close", "buy", "1.00", "1.20000")
    assert await s.venue.positions(ACCOUNT) == []
    # Short 1.00 from 1.25 bought back at 1.20: + 1.00 * 100000 * 0.05.
    assert await pool.fetchval("SELECT realized_pnl FROM trading.paper_positions") == D("27500")
    await s.venue.submit(order("other", account="paper-2"))
    await tick(s, "1.1", "1.1")
    assert await s.venue.positions(ACCOUNT) == []  # accounts apart


# -- simulated faults -----------------------------------------------------------------------------


async def test_a_timeout_stores_the_order_and_loses_the_answer(make):
    s = make()
    s.venue.fail_next_submits("timeout")
    with pytest.raises(VenueTimeout):
        await s.venue.submit(order("lost"))
    assert s.sink.reports == []
    assert (await s.venue.order_status(ACCOUNT, "lost")).state == "accepted"
    await tick(s, "1.10000", "1.10010")  # it works at the venue, and the owed acceptance arrives first
    assert s.sink.kinds("lost") == ["accepted", "fill"]


async def test_unreachable_stores_nothing(make):
    s = make()
    s.venue.fail_next_submits("unreachable", count=2)
    for _ in range(2):
        with pytest.raises(VenueUnreachable):
            await s.venue.submit(order("gone"))
    assert (await s.venue.order_status(ACCOUNT, "gone")).state == "not_found"
    await s.venue.submit(order("gone"))  # the fault is spent: the retry reaches the venue
    assert s.sink.kinds("gone") == ["accepted"]
