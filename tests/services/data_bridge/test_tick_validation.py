"""TickValidator: one test per rejection reason, plus boundaries and check order."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from services.data_bridge.domain.validation import Rejection, RejectReason, TickValidator
from shared.events import MarketTick, tick_event_id

NOW = 1_700_000_000 * 1_000_000_000  # 2023-11-14, ns
S = 1_000_000_000


def tick(symbol: str = "EURUSD", *, bid: str = "1.10000", ask: str = "1.10010", ts: int = NOW) -> MarketTick:
    b, a = Decimal(bid), Decimal(ask)
    return MarketTick(
        event_id=tick_event_id(symbol, ts // 1_000_000, b, a, None, Decimal(0), 0),
        ts_event=ts,
        ts_init=ts,
        symbol=symbol,
        bid=b,
        ask=a,
    )


def test_valid_tick_passes() -> None:
    assert TickValidator(symbols=frozenset({"EURUSD"})).check(tick(), NOW) is None


def test_none_symbols_accepts_any_symbol() -> None:
    assert TickValidator().check(tick("ANYTHING.X"), NOW) is None


def test_unknown_symbol() -> None:
    rej = TickValidator(symbols=frozenset({"EURUSD"})).check(tick("GBPUSD"), NOW)
    assert rej is not None and rej.reason is RejectReason.UNKNOWN_SYMBOL
    assert "GBPUSD" in rej.detail


def test_crossed_quote() -> None:
    rej = TickValidator().check(tick(bid="1.2", ask="1.1"), NOW)
    assert rej is not None and rej.reason is RejectReason.CROSSED_QUOTE
    assert "1.1" in rej.detail and "1.2" in rej.detail


def test_locked_quote_is_valid() -> None:
    assert TickValidator().check(tick(bid="1.1", ask="1.1"), NOW) is None


def test_spread_too_wide() -> None:
    rej = TickValidator(max_spread_ratio=Decimal("0.01")).check(tick(bid="100", ask="101.5"), NOW)
    assert rej is not None and rej.reason is RejectReason.SPREAD_TOO_WIDE
    assert "1.5" in rej.detail and "0.01" in rej.detail


def test_spread_exactly_at_limit_is_valid() -> None:
    v = TickValidator(max_spread_ratio=Decimal("0.01"))
    assert v.check(tick(bid="100", ask="101"), NOW) is None
    assert v.check(tick(bid="100", ask="101.00000001"), NOW) is not None  # the smallest step above


def test_timestamp_in_future() -> None:
    v = TickValidator(max_future_ns=60 * S)
    assert v.check(tick(ts=NOW + 60 * S), NOW) is None  # boundary: allowed
    rej = v.check(tick(ts=NOW + 61 * S), NOW)
    assert rej is not None and rej.reason is RejectReason.TIMESTAMP_IN_FUTURE
    assert str(NOW + 61 * S) in rej.detail


def test_timestamp_too_old() -> None:
    v = TickValidator()
    old = 946_684_800 * S - 1  # 1 ns before 2000-01-01
    rej = v.check(tick(ts=old), NOW)
    assert rej is not None and rej.reason is RejectReason.TIMESTAMP_TOO_OLD
    assert str(old) in rej.detail
    assert v.check(tick(ts=old + 1), NOW) is None
    # A custom floor.
    assert TickValidator(min_ts_ns=NOW).check(tick(ts=NOW - 1), NOW) is not None


def test_first_failing_check_wins() -> None:
    v = TickValidator(symbols=frozenset({"EURUSD"}))
    bad_everything = tick("GBPUSD", bid="2", ask="1", ts=NOW + 3600 * S)
    assert v.check(bad_everything, NOW).reason is RejectReason.UNKNOWN_SYMBOL  # type: ignore[union-attr]
    assert v.check(tick(bid="2", ask="1", ts=NOW + 3600 * S), NOW).reason is RejectReason.CROSSED_QUOTE  # type: ignore[union-attr]


def test_verdict_is_stateless() -> None:
    """Same tick, same clock -> same verdict, whatever was checked before."""
    v = TickValidator()
    t = tick(ts=NOW - 5 * S)
    first = v.check(t, NOW)
    for other in (tick(ts=NOW + 10 * S), tick(bid="2", ask="1"), t):
        v.check(other, NOW)
    assert v.check(t, NOW) == first is None


def test_codes_are_stable_snake_case() -> None:
    assert {r.value for r in RejectReason} == {
        "unknown_symbol",
        "crossed_quote",
        "spread_too_wide",
        "timestamp_in_future",
        "timestamp_too_old",
    }
    assert f"{RejectReason.CROSSED_QUOTE}" == "crossed_quote"


def test_rejection_is_frozen() -> None:
    rej = Rejection(RejectReason.CROSSED_QUOTE, "x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        rej.detail = "y"  # type: ignore[misc]


def test_invalid_configuration() -> None:
    with pytest.raises(ValueError):
        TickValidator(max_future_ns=-1)
    with pytest.raises(ValueError):
        TickValidator(max_spread_ratio=Decimal("-0.1"))
