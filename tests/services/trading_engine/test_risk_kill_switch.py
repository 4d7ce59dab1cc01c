"""Kill switches: each scope blocks the orders it covers and no other; reset needs a person and a
reason; the throttle trips an account on repeated rejections and on its daily loss."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.trading_engine.risk.checks import Reason
from services.trading_engine.risk.kill_switch import (
    InvalidSwitch,
    KillSwitchBoard,
    OrderFacts,
    ResetRefused,
    reset,
    switch_event_id,
    trip,
)
from services.trading_engine.risk.throttle import DAILY_LOSS_ACTOR, REJECTIONS_ACTOR, Throttle
from tests.services.trading_engine.risk_support import WEDNESDAY_NS, S, limits

ORDER = OrderFacts(tenant="acme", account_id="acc-1", venue="paper", strategy="rsi")

#: (scope, target, switch tenant) -> an order it blocks (ORDER), and one like it that it must not block.
SCOPES = [
    ("all", None, "acme", OrderFacts("zeta", "z-9", "mt5", None)),
    ("venue", "paper", "acme", OrderFacts("acme", "acc-1", "mt5", "rsi")),
    ("tenant", "acme", "acme", OrderFacts("zeta", "acc-1", "paper", "rsi")),
    ("account", "acc-1", "acme", OrderFacts("acme", "acc-2", "paper", "rsi")),
    ("account", "acc-1", "acme", OrderFacts("zeta", "acc-1", "paper", "rsi")),  # same id, other tenant
    ("strategy", "rsi", "acme", OrderFacts("acme", "acc-1", "paper", "signals")),
    ("strategy", "rsi", "acme", OrderFacts("acme", "acc-1", "paper", None)),  # a manual order
    ("strategy", "rsi", "acme", OrderFacts("zeta", "acc-1", "paper", "rsi")),
]


@pytest.mark.parametrize(("scope", "target", "tenant", "unrelated"), SCOPES)
def test_each_scope_blocks_its_orders_and_not_unrelated_ones(scope, target, tenant, unrelated):
    board = KillSwitchBoard()
    switch = trip(scope=scope, target=target, tenant=tenant, actor="ops", reason="drill", now_ns=WEDNESDAY_NS)
    board.put(switch)
    assert board.is_blocked(ORDER) == switch
    if scope == "all":
        assert board.is_blocked(unrelated) == switch  # nothing is unrelated to "all"
    else:
        assert board.is_blocked(unrelated) is None
    board.put(reset(switch, person="Alice Admin", reason="drill over", now_ns=WEDNESDAY_NS + S))
    assert board.is_blocked(ORDER) is None
    board.apply(switch.event())  # a late trip event of a switch already reset does not re-block
    assert board.is_blocked(ORDER) is None


def test_platform_scopes_belong_to_the_platform_and_targets_are_checked():
    assert trip(scope="all", target=None, tenant="acme", actor="a", reason="r", now_ns=1).tenant == "platform"
    assert trip(scope="venue", target="mt5", tenant="acme", actor="a", reason="r", now_ns=1).tenant == "platform"
    assert trip(scope="tenant", target=None, tenant="acme", actor="a", reason="r", now_ns=1).target == "acme"
    for scope, target in [
        ("all", "x"),
        ("venue", "nyse"),
        ("tenant", "zeta"),
        ("account", None),
        ("strategy", ""),
        ("desk", "x"),
    ]:
        with pytest.raises(InvalidSwitch):
            trip(scope=scope, target=target, tenant="acme", actor="a", reason="r", now_ns=1)
    with pytest.raises(InvalidSwitch):
        trip(scope="account", target="acc-1", tenant="acme", actor="a", reason=" ", now_ns=1)


@pytest.mark.parametrize(
    ("person", "reason"),
    [
        (None, "fixed"),
        ("", "fixed"),
        ("   ", "fixed"),
        ("Alice", None),
        ("Alice", ""),
        ("throttle:rejections", "fixed"),
    ],
)
def test_reset_refuses_without_a_named_person_and_a_reason(person, reason):
    switch = trip(scope="account", target="acc-1", tenant="acme", actor="ops", reason="x", now_ns=1)
    with pytest.raises(ResetRefused):
        reset(switch, person=person, reason=reason, now_ns=2)


def test_trip_and_reset_events():
    switch = trip(scope="account", target="acc-1", tenant="acme", actor="bob", reason="runaway", now_ns=5 * S)
    tripped = switch.event()
    assert (tripped.state, tripped.actor, tripped.reason, tripped.ts_event) == ("tripped", "bob", "runaway", 5 * S)
    done = reset(switch, person="Alice", reason="fixed", now_ns=9 * S)
    event = done.event()
    assert (event.state, event.actor, event.reason, event.ts_event) == ("reset", "Alice", "fixed", 9 * S)
    assert event.event_id == switch_event_id(switch.switch_id, "reset") != tripped.event_id
    with pytest.raises(ResetRefused):
        reset(done, person="Alice", reason="again", now_ns=10 * S)


def test_the_throttle_trips_the_account_on_the_nth_rejection_within_the_window():
    throttle = Throttle()
    lim = limits(throttle_rejections=3, throttle_window_s=10)
    t = WEDNESDAY_NS
    assert throttle.rejected("acme", "acc-1", Reason.PRICE_COLLAR, lim, t) is None
    assert throttle.rejected("acme", "acc-1", "venue_rejected", lim, t + 1 * S) is None
    assert throttle.rejected("acme", "acc-2", Reason.PRICE_COLLAR, lim, t + 2 * S) is None  # another account
    assert throttle.rejected("acme", "acc-1", Reason.KILL_SWITCH, lim, t + 3 * S) is None  # does not count
    switch = throttle.rejected("acme", "acc-1", Reason.MESSAGE_RATE, lim, t + 4 * S)
    assert switch is not None and (switch.scope, switch.target, switch.tenant) == ("account", "acc-1", "acme")
    assert switch.actor == REJECTIONS_ACTOR and switch.automatic and "message_rate" in switch.reason
    # counting starts afresh after a trip
    assert throttle.rejected("acme", "acc-1", Reason.PRICE_COLLAR, lim, t + 5 * S) is None


def test_the_throttle_window_slides():
    throttle = Throttle()
    lim = limits(throttle_rejections=2, throttle_window_s=10)
    assert throttle.rejected("acme", "acc-1", "x", lim, WEDNESDAY_NS) is None
    assert throttle.rejected("acme", "acc-1", "x", lim, WEDNESDAY_NS + 10 * S) is None  # the first slid out
    assert throttle.rejected("acme", "acc-1", "x", lim, WEDNESDAY_NS + 11 * S) is not None


def test_the_throttle_trips_on_the_daily_loss_once_a_day():
    throttle = Throttle()
    lim = limits(daily_loss_limit=Decimal(1000), trip_on_daily_loss=True)
    assert throttle.pnl("acme", "acc-1", Decimal("-999.99"), lim, WEDNESDAY_NS) is None
    switch = throttle.pnl("acme", "acc-1", Decimal("-1000"), lim, WEDNESDAY_NS)
    assert switch is not None and switch.actor == DAILY_LOSS_ACTOR and switch.target == "acc-1"
    assert throttle.pnl("acme", "acc-1", Decimal("-1500"), lim, WEDNESDAY_NS + 60 * S) is None  # same day
    assert throttle.pnl("acme", "acc-1", Decimal("-1500"), lim, WEDNESDAY_NS + 86_400 * S) is not None  # next day
    off = limits(daily_loss_limit=Decimal(1000), trip_on_daily_loss=False)
    assert Throttle().pnl("acme", "acc-1", Decimal("-5000"), off, WEDNESDAY_NS) is None
