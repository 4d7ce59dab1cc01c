"""The pre-trade gate: each check accepts at its boundary and rejects just past it, with its reason code.

Every test switches on the one check it is about (``risk_support.OFF`` has them all off), so a
rejection can only come from that check.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.trading_engine.risk.checks import Reason
from services.trading_engine.risk.gate import RiskGate
from services.trading_engine.risk.kill_switch import KillSwitchBoard, trip
from services.trading_engine.risk.limits import DEFAULT_LIMITS
from tests.services.trading_engine.risk_support import (
    OFF,
    SATURDAY_NS,
    WEDNESDAY_NS,
    S,
    context,
    limits,
    order,
)


def codes(gate: RiskGate, o, ctx) -> list[str]:
    return gate.evaluate(o, ctx).codes


def test_everything_off_accepts_and_defaults_accept_an_ordinary_order():
    assert RiskGate().check(order(), context()) is None
    assert RiskGate().check(order(quantity=Decimal("0.1")), context(DEFAULT_LIMITS)) is None


# -- price collar ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "prices", "expected"),
    [
        ("limit", {"limit_price": Decimal("1.15500")}, []),  # exactly 500 bps above 1.10000
        ("limit", {"limit_price": Decimal("1.15501")}, [Reason.PRICE_COLLAR]),
        ("limit", {"limit_price": Decimal("1.04500")}, []),  # 500 bps below
        ("limit", {"limit_price": Decimal("1.04499")}, [Reason.PRICE_COLLAR]),
        ("stop", {"stop_price": Decimal("1.15501")}, [Reason.PRICE_COLLAR]),
        ("stop_limit", {"stop_price": Decimal("1.10"), "limit_price": Decimal("1.16")}, [Reason.PRICE_COLLAR]),
        ("stop_limit", {"stop_price": Decimal("1.10"), "limit_price": Decimal("1.15")}, []),
    ],
)
def test_price_collar_in_bps_of_the_last_price(kind, prices, expected):
    ctx = context(limits(price_collar_bps=500))
    assert codes(RiskGate(), order(type=kind, **prices), ctx) == expected


def test_without_a_last_price_a_market_order_is_refused_and_a_collared_limit_order_too():
    gate = RiskGate()
    assert codes(gate, order(), context(last=None)) == [Reason.NO_REFERENCE_PRICE]
    priced = order(type="limit", limit_price=Decimal("1.1"))
    assert codes(gate, priced, context(limits(price_collar_bps=100), last=None)) == [Reason.NO_REFERENCE_PRICE]
    assert codes(gate, priced, context(last=None)) == []  # no collar: its own price values it


# -- order value and volume ---------------------------------------------------------------------


def test_max_order_value_is_the_notional_at_the_order_price():
    # 1 lot EURUSD = 100,000 EUR at 1.10000 = 110,000 USD
    gate = RiskGate()
    assert codes(gate, order(), context(limits(max_order_value=Decimal(110_000)))) == []
    assert codes(gate, order(), context(limits(max_order_value=Decimal("109999.99")))) == [Reason.MAX_ORDER_VALUE]
    # a limit order is valued at its limit price, not the last price
    limit = order(type="limit", limit_price=Decimal("1.2"))
    assert codes(gate, limit, context(limits(max_order_value=Decimal(110_000)))) == [Reason.MAX_ORDER_VALUE]


def test_max_order_volume_in_lots():
    gate = RiskGate()
    ctx = context(limits(max_order_lots=Decimal(5)))
    assert codes(gate, order(quantity=Decimal(5)), ctx) == []
    assert codes(gate, order(quantity=Decimal("5.01")), ctx) == [Reason.MAX_ORDER_VOLUME]


def test_instrument_volume_rules_and_unknown_symbols():
    gate = RiskGate()
    assert codes(gate, order(quantity=Decimal("0.015")), context()) == [Reason.INVALID_QUANTITY]
    assert codes(gate, order(symbol="NOPE"), context(symbol="NOPE")) == [Reason.UNKNOWN_SYMBOL]


# -- message rate ---------------------------------------------------------------------------------


def test_message_rate_counts_submits_and_cancels_of_one_account_per_window():
    gate = RiskGate()
    lim = limits(max_messages=3, message_window_s=1)
    for i in range(2):
        assert gate.check(order(quantity=Decimal(1 + i)), context(lim, now_ns=WEDNESDAY_NS + i)) is None
    assert gate.admit_message("acme", "acc-1", context(lim, now_ns=WEDNESDAY_NS + 2)) is None  # the third: a cancel
    refused = gate.check(order(quantity=Decimal(9)), context(lim, now_ns=WEDNESDAY_NS + 3))
    assert refused is not None and refused.code == Reason.MESSAGE_RATE
    # another account has its own budget; the window slides
    assert gate.check(order(account_id="acc-2"), context(lim, now_ns=WEDNESDAY_NS + 4)) is None
    assert gate.check(order(quantity=Decimal(9)), context(lim, now_ns=WEDNESDAY_NS + S)) is None


def test_a_rejected_order_uses_no_message_budget():
    gate = RiskGate()
    lim = limits(max_messages=1, max_order_lots=Decimal(1))
    assert codes(gate, order(quantity=Decimal(2)), context(lim)) == [Reason.MAX_ORDER_VOLUME]
    assert codes(gate, order(), context(lim, now_ns=WEDNESDAY_NS + 1)) == []


# -- credit and capital ---------------------------------------------------------------------------


def test_account_credit_limit_counts_open_exposure_plus_this_order():
    gate = RiskGate()
    lim = limits(account_credit_limit=Decimal(200_000))
    assert codes(gate, order(), context(lim, open_exposure="90000")) == []  # 90,000 + 110,000
    assert codes(gate, order(), context(lim, open_exposure="90000.01")) == [Reason.CREDIT_LIMIT_ACCOUNT]


def test_tenant_credit_limit_counts_the_tenants_exposure():
    gate = RiskGate()
    lim = limits(tenant_credit_limit=Decimal(1_000_000))
    assert codes(gate, order(), context(lim, tenant_exposure="890000")) == []
    assert codes(gate, order(), context(lim, tenant_exposure="890001")) == [Reason.CREDIT_LIMIT_TENANT]


def test_capital_the_orders_margin_must_fit_in_free_equity():
    # margin of 1 lot EURUSD: 110,000 * 0.0333 = 3663
    gate = RiskGate()
    lim = limits(check_capital=True)
    assert codes(gate, order(), context(lim, balance=Decimal(10_000), used_margin="5000", reserved="1337")) == []
    assert codes(gate, order(), context(lim, balance=Decimal(10_000), used_margin="5000", reserved="1338")) == [
        Reason.INSUFFICIENT_CAPITAL
    ]
    # unrealised losses reduce the equity
    assert codes(gate, order(), context(lim, balance=Decimal(3663), unrealised_pnl="-0.01")) == [
        Reason.INSUFFICIENT_CAPITAL
    ]


# -- position and exposure ------------------------------------------------------------------------


def test_position_limit_on_the_resulting_position_with_open_orders():
    gate = RiskGate()
    lim = limits(max_position_lots=Decimal(10))
    assert codes(gate, order(quantity=Decimal(2)), context(lim, position="5", open_buy="3")) == []  # 5+3+2
    assert codes(gate, order(quantity=Decimal(2)), context(lim, position="5", open_buy="3.01")) == [
        Reason.POSITION_LIMIT
    ]
    assert codes(gate, order(side="sell", quantity=Decimal(4)), context(lim, position="-6")) == []
    assert codes(gate, order(side="sell", quantity=Decimal(5)), context(lim, position="-6")) == [Reason.POSITION_LIMIT]
    # already over the limit (it was lowered): reducing passes, adding does not
    assert codes(gate, order(side="sell"), context(lim, position="15")) == []
    assert codes(gate, order(side="buy"), context(lim, position="15")) == [Reason.POSITION_LIMIT]


def test_exposure_limit_per_symbol_is_the_resulting_positions_notional():
    gate = RiskGate()
    lim = limits(max_symbol_exposure=Decimal(330_000))
    assert codes(gate, order(), context(lim, position="2")) == []  # 3 lots * 110,000
    assert codes(gate, order(), context(lim, position="2.01")) == [Reason.EXPOSURE_LIMIT]


# -- daily loss -----------------------------------------------------------------------------------


def test_daily_loss_limit_blocks_risk_increasing_orders_only():
    gate = RiskGate()
    lim = limits(daily_loss_limit=Decimal(1000))
    assert codes(gate, order(), context(lim, position="1", realised_pnl_today="-600", unrealised_pnl="-399.99")) == []
    hit = context(lim, position="1", realised_pnl_today="-600", unrealised_pnl="-400")
    assert codes(gate, order(), hit) == [Reason.DAILY_LOSS_LIMIT]
    assert codes(gate, order(side="sell", quantity=Decimal("0.5")), hit) == []  # reduces the long


# -- duplicates -----------------------------------------------------------------------------------


def test_duplicate_orders_within_the_window():
    gate = RiskGate()
    lim = limits(duplicate_window_s=5)
    first = order(type="limit", limit_price=Decimal("1.1"))
    assert codes(gate, first, context(lim)) == []
    same = order(type="limit", limit_price=Decimal("1.10000"), quantity=Decimal("1.00"))
    assert codes(gate, same, context(lim, now_ns=WEDNESDAY_NS + 5 * S - 1)) == [Reason.DUPLICATE_ORDER]
    # any term different is another order; the same terms after the window are a new order
    assert codes(gate, order(type="limit", limit_price=Decimal("1.1001")), context(lim, now_ns=WEDNESDAY_NS + 1)) == []
    assert codes(gate, order(type="limit", limit_price=Decimal("1.1"), side="sell"), context(lim)) == []
    assert codes(gate, order(type="limit", limit_price=Decimal("1.1"), account_id="acc-2"), context(lim)) == []
    assert codes(gate, same, context(lim, now_ns=WEDNESDAY_NS + 5 * S)) == []


def test_a_rejected_order_is_no_original_for_the_duplicate_check():
    gate = RiskGate()
    lim = limits(duplicate_window_s=5, max_order_lots=Decimal(1))
    assert codes(gate, order(quantity=Decimal(1)), context(lim, last=None)) == [Reason.NO_REFERENCE_PRICE]
    assert codes(gate, order(quantity=Decimal(1)), context(lim)) == []


# -- restricted symbols and sessions ---------------------------------------------------------------


def test_restricted_symbols():
    gate = RiskGate()
    lim = limits(restricted_symbols=["XAUUSD", "GBPUSD"])
    assert codes(gate, order(), context(lim)) == []
    assert codes(gate, order(symbol="GBPUSD"), context(lim, symbol="GBPUSD")) == [Reason.RESTRICTED_SYMBOL]


def test_no_orders_into_a_closed_market_by_the_injected_clock():
    gate = RiskGate()
    lim = limits(check_market_hours=True)
    assert codes(gate, order(), context(lim, now_ns=WEDNESDAY_NS)) == []
    assert codes(gate, order(), context(lim, now_ns=SATURDAY_NS)) == [Reason.MARKET_CLOSED]
    btc = order(symbol="BTCUSD", quantity=Decimal("0.1"))
    assert codes(gate, btc, context(lim, now_ns=SATURDAY_NS, symbol="BTCUSD", last="90000")) == []
    assert codes(gate, order(), context(OFF, now_ns=SATURDAY_NS)) == []  # the check switched off


# -- all failures, and the kill switch first ------------------------------------------------------


def test_every_failed_check_is_listed_with_its_code():
    lim = limits(max_order_lots=Decimal(1), max_order_value=Decimal(1000), restricted_symbols=["EURUSD"])
    decision = RiskGate().evaluate(order(quantity=Decimal(2)), context(lim))
    assert decision.codes == [Reason.RESTRICTED_SYMBOL, Reason.MAX_ORDER_VALUE, Reason.MAX_ORDER_VOLUME]
    assert decision.first is not None and "restricted" in decision.first.detail


def test_a_tripped_kill_switch_refuses_before_anything_else():
    board = KillSwitchBoard()
    gate = RiskGate(board)
    assert gate.check(order(), context()) is None
    board.put(trip(scope="account", target="acc-1", tenant="acme", actor="ops", reason="test", now_ns=WEDNESDAY_NS))
    refused = gate.check(order(quantity=Decimal(2)), context())
    assert refused is not None and refused.code == Reason.KILL_SWITCH and "account acc-1" in refused.detail
    assert gate.check(order(account_id="acc-2", quantity=Decimal(3)), context()) is None
