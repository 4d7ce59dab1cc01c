"""Risk limits: the wire form both ways, account overrides merged over the tenant, versions in order."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.trading_engine.risk.limits import (
    DEFAULT_LIMITS,
    LIMIT_NAMES,
    InvalidLimits,
    LimitsBook,
    LimitsVersion,
    RiskLimits,
    effective,
    from_wire,
    limits_event_id,
    parse_override,
    to_wire,
)
from shared.events import RiskLimitsChanged


def test_the_wire_form_round_trips_and_fits_the_event():
    limits = RiskLimits(
        max_order_value=Decimal("250000.5"), daily_loss_limit=Decimal(900), restricted_symbols=["XAUUSD"]
    )
    wire = to_wire(limits)
    assert set(wire) == set(LIMIT_NAMES)
    assert wire["max_order_value"] == "250000.5" and wire["daily_loss_limit"] == "900"
    assert wire["account_credit_limit"] is None and wire["restricted_symbols"] == ["XAUUSD"]
    assert wire["check_capital"] is True and wire["price_collar_bps"] == 500
    assert from_wire(wire) == limits
    event = LimitsVersion("acme", None, 3, wire, "alice", "tighter", 1).event()
    assert RiskLimitsChanged.model_validate_json(event.model_dump_json()).limits == wire
    assert event.event_id == limits_event_id("acme", None, 3) != limits_event_id("acme", "acc-1", 3)


@pytest.mark.parametrize(
    ("wire", "field"),
    [
        ({"max_order_value": 1000.5}, "max_order_value"),  # a float: money travels as a string
        ({"max_order_value": "-1"}, "max_order_value"),
        ({"price_collar_bps": 0}, "price_collar_bps"),
        ({"max_order_lots": "abc"}, "max_order_lots"),
        ({"restricted_symbols": ["eurusd"]}, "restricted_symbols.0"),
        ({"no_such_limit": 1}, "no_such_limit"),
        ({"check_capital": None}, "check_capital"),  # a switch is true or false, never off
    ],
)
def test_invalid_limits_name_the_field(wire, field):
    with pytest.raises(InvalidLimits) as refused:
        from_wire(wire)
    assert refused.value.field == field
    with pytest.raises(InvalidLimits):
        parse_override(wire)


def test_an_account_override_is_merged_over_its_tenant():
    tenant = RiskLimits(max_order_lots=Decimal(10), daily_loss_limit=Decimal(500))
    override = parse_override({"max_order_lots": "2", "daily_loss_limit": None})
    assert set(override) == {"max_order_lots", "daily_loss_limit"}  # only what it overrides
    merged = effective(tenant, override)
    assert merged.max_order_lots == Decimal(2)
    assert merged.daily_loss_limit is None  # switched off for this account
    assert merged.price_collar_bps == tenant.price_collar_bps  # inherited
    assert effective(tenant, None) is tenant


def test_the_book_keeps_the_newest_version_and_merges():
    book = LimitsBook()
    assert book.limits_for("acme", "acc-1") == DEFAULT_LIMITS
    v1 = LimitsVersion("acme", None, 1, to_wire(RiskLimits(max_order_lots=Decimal(10))), "a", None, 1)
    v2 = LimitsVersion("acme", None, 2, to_wire(RiskLimits(max_order_lots=Decimal(20))), "a", None, 2)
    acc = LimitsVersion("acme", "acc-1", 1, {"max_order_lots": "3"}, "a", None, 3)
    assert book.apply(v2.event()) and book.apply(acc.event())
    assert not book.apply(v1.event())  # late, older: ignored
    assert not book.apply(v2.event())  # the same again: ignored
    assert book.limits_for("acme", "acc-1").max_order_lots == Decimal(3)
    assert book.limits_for("acme", "acc-2").max_order_lots == Decimal(20)
    assert book.limits_for("other", "acc-1") == DEFAULT_LIMITS
    # a new tenant version reaches the cached merge of its accounts
    v3 = LimitsVersion(
        "acme", None, 3, to_wire(RiskLimits(max_order_lots=Decimal(30), price_collar_bps=50)), "a", None, 4
    )
    book.apply(v3.event())
    assert book.limits_for("acme", "acc-1").price_collar_bps == 50
    assert book.limits_for("acme", "acc-1").max_order_lots == Decimal(3)
    assert book.limits_for("acme", "acc-2").max_order_lots == Decimal(30)
