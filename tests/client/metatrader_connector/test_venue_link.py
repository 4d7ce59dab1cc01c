"""The MT5 venue's client side against the simulated terminal: an order is sent once, found by
its comment when an answer was lost, and described back (accepted, fills, canceled, rejected);
the snapshot shows every position, the platform's and the ones opened by hand."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from client.metatrader_connector.state import Terminal
from client.metatrader_connector.terminal import SimulatedTerminal
from client.metatrader_connector.venue_link import VenueExecutor
from shared.mt5_link import PLATFORM_MAGIC, Mt5Command, Mt5Order, mt5_comment

ACCOUNT = "mt5-1"
#: A Wednesday noon: FX is open (time is the test's, never the wall clock's).
NOON = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC).timestamp()


class Clock:
    def __init__(self) -> None:
        self.now = NOON

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def terminal():
    clock = Clock()
    mt5 = SimulatedTerminal(seed=7, clock=clock)
    assert mt5.initialize()
    term = Terminal(mt5)
    yield term, clock
    term.close()


def command(coid: str, kind: str = "submit", attempt: int = 1, **order) -> Mt5Command:
    body = None
    if kind == "submit":
        fields = {
            "order_id": uuid.uuid4(),
            "client_order_id": coid,
            "symbol": "EURUSD",
            "side": "buy",
            "type": "market",
            "quantity": Decimal("0.10"),
            "time_in_force": "gtc",
        } | order
        body = Mt5Order(**fields)
    return Mt5Command(
        command_id=uuid.uuid4(), kind=kind, account_id=ACCOUNT, client_order_id=coid, order=body, attempt=attempt
    )


def executor(term: Terminal, clock: Clock) -> VenueExecutor:
    return VenueExecutor(term.mt5, term.call, ACCOUNT, wall_clock=clock)


async def test_a_market_order_is_sent_once_and_described_again_when_handed_out_twice(terminal):
    term, clock = terminal
    link = executor(term, clock)
    ask = (await term.call("symbol_info_tick", "EURUSD")).ask
    first = await link.execute(command("buy-1"))
    assert [r.kind for r in first] == ["accepted", "fill"]
    fill = first[1].fill
    assert fill is not None and fill.quantity == Decimal("0.1") and float(fill.price) == pytest.approx(ask)
    clock.now += 5
    again = await link.execute(command("buy-1", attempt=2))  # redelivered: the connector died before reporting
    assert [(r.kind, r.venue_order_id) for r in again] == [(r.kind, r.venue_order_id) for r in first]
    assert again[1].fill == fill
    positions = await term.call("positions_get")
    assert [(p.symbol, p.volume) for p in positions] == [("EURUSD", 0.1)]


@pytest.mark.parametrize("executed", [True, False])
async def test_a_lost_answer_reports_nothing_and_the_next_attempt_finds_or_sends_the_order(terminal, executed):
    term, clock = terminal
    link = executor(term, clock)
    term.mt5.fail_next_order_send(executed=executed)
    assert await link.execute(command("lost-1")) == []
    clock.now += 1
    retried = await link.execute(command("lost-1", attempt=2))
    assert [r.kind for r in retried] == ["accepted", "fill"]
    positions = await term.call("positions_get")
    assert [(p.symbol, p.volume, p.comment) for p in positions] == [("EURUSD", 0.1, "lost-1")]
    assert len(await term.call("history_orders_get", dt.datetime(2026, 11, 1), dt.datetime(2026, 12, 1))) == 1


async def test_a_resting_limit_is_canceled_and_a_bad_volume_is_rejected_with_the_retcode(terminal):
    term, clock = terminal
    link = executor(term, clock)
    bid = (await term.call("symbol_info_tick", "EURUSD")).bid
    far = Decimal(str(round(bid * 0.9, 5)))
    placed = await link.execute(command("lim-1", type="limit", limit_price=far))
    assert [r.kind for r in placed] == ["accepted"]
    assert [o.comment for o in await term.call("orders_get")] == ["lim-1"]
    canceled = await link.execute(command("lim-1", kind="cancel"))
    assert [r.kind for r in canceled] == ["canceled"]
    assert await term.call("orders_get") == ()
    twice = await link.execute(command("lim-1", kind="cancel", attempt=2))  # already gone: say what it became
    assert [r.kind for r in twice] == ["accepted", "canceled"]
    rejected = await link.execute(command("tiny", quantity=Decimal("0.001")))
    assert [(r.kind, r.reason_code) for r in rejected] == [("rejected", "mt5_10014")]


async def test_the_snapshot_shows_every_position_and_a_fill_report_for_each_platform_deal(terminal):
    term, clock = terminal
    link = executor(term, clock)
    await link.execute(command("buy-2", quantity=Decimal("0.20")))
    tick = await term.call("symbol_info_tick", "XAUUSD")
    by_hand = {
        "action": term.mt5.TRADE_ACTION_DEAL,
        "symbol": "XAUUSD",
        "volume": 0.5,
        "type": term.mt5.ORDER_TYPE_SELL,
        "price": tick.bid,
        "deviation": 50,
        "type_filling": term.mt5.ORDER_FILLING_IOC,
    }
    assert (await term.call("order_send", by_hand)).retcode == term.mt5.TRADE_RETCODE_DONE
    clock.now += 2
    snapshot, reports = await link.snapshot()
    assert {(p.symbol, p.quantity, p.magic) for p in snapshot.positions} == {
        ("EURUSD", Decimal("0.2"), PLATFORM_MAGIC),
        ("XAUUSD", Decimal("-0.5"), 0),
    }
    assert [o.comment for o in snapshot.orders] == [mt5_comment("buy-2")]  # only the platform's orders
    assert [(r.kind, r.client_order_id) for r in reports] == [("fill", "buy-2")]
    assert snapshot.deals[0].order_ticket == snapshot.orders[0].ticket
