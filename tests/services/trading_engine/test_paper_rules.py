"""The paper venue's rules without storage: quotes rounded against the trader, fill sizes, commission
rounding, netting with realised profit, and when a day order's trading day ends (by session)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from services.trading_engine.venues import paper_rules as rules
from shared.instruments import INSTRUMENTS

D = Decimal
EURUSD, XAUUSD, BTCUSD = INSTRUMENTS["EURUSD"], INSTRUMENTS["XAUUSD"], INSTRUMENTS["BTCUSD"]


def utc_ns(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC).timestamp()) * 1_000_000_000


def test_an_odd_extra_spread_rounds_both_sides_against_the_trader():
    quote = rules.venue_quote(D("1.10000"), D("1.10010"), EURUSD, rules.Costs(extra_spread_points=D(1)))
    # Half a point each side: 1.099995 down to 1.09999, 1.100105 up to 1.10011.
    assert quote == rules.Quote(D("1.09999"), D("1.10011"))
    assert rules.venue_quote(D("1.1"), D("1.1001"), EURUSD, rules.Costs()) == rules.Quote(D("1.1"), D("1.1001"))


def test_commission_rounds_half_up_to_cents():
    # Gold: 0.01 lots = 1 oz, notional 2000.50; 1 bps of it = 0.20005; plus 0.5 per lot * 0.01 = 0.005.
    costs = rules.Costs(commission_per_lot=D("0.5"), commission_bps=D(1))
    assert rules.commission(D("0.01"), D("2000.50"), XAUUSD, costs) == D("0.21")  # 0.20505 -> 0.21
    assert rules.commission(D("0.01"), D("2000.00"), XAUUSD, rules.Costs(commission_per_lot=D("0.5"))) == D("0.01")
    assert rules.commission(D("0.01"), D("2000.00"), XAUUSD, rules.Costs(commission_per_lot=D("0.4"))) == D("0.00")


@pytest.mark.parametrize(
    ("remaining", "ratio", "expected"),
    [("1.00", "1", "1.00"), ("1.00", "0.333", "0.33"), ("0.05", "0.1", "0.01"), ("0.01", "0.5", "0.01")],
)
def test_a_tick_fills_a_share_in_whole_steps(remaining, ratio, expected):
    assert rules.fill_quantity(D(remaining), D(ratio), D("0.01")) == D(expected)


def test_netting_averages_in_realises_out_and_flips_at_the_fill_price():
    size = D(1)  # BTCUSD: one lot is one coin
    p = rules.apply_fill(rules.Position(), "sell", D(2), D(100), size)
    assert p == rules.Position(D(-2), D(100), D(0))
    p = rules.apply_fill(p, "sell", D(1), D(130), size)
    assert p == rules.Position(D(-3), D(110), D(0))
    p = rules.apply_fill(p, "buy", D(1), D(100), size)  # short from 110 covered at 100: +10
    assert p == rules.Position(D(-2), D(110), D(10))
    p = rules.apply_fill(p, "buy", D(5), D(120), size)  # -2 closed at 120 (-20), 3 long at 120
    assert p == rules.Position(D(3), D(120), D(-10))
    p = rules.apply_fill(p, "sell", D(3), D(121), size)
    assert p == rules.Position(D(0), D(0), D(-7))


def test_an_average_price_is_kept_to_eight_places():
    p = rules.apply_fill(rules.Position(), "buy", D(1), D("1.10000"), D(100_000))
    p = rules.apply_fill(p, "buy", D(2), D("1.10001"), D(100_000))
    assert p.average_price == D("1.10000667")  # 3.30002 / 3 = 1.1000066666...


@pytest.mark.parametrize(
    ("symbol", "submitted", "ends"),
    [
        ("EURUSD", (2026, 1, 7, 10, 30), (2026, 1, 7, 22)),  # Wednesday: the 22:00 rollover
        ("EURUSD", (2026, 1, 7, 22, 30), (2026, 1, 8, 22)),  # after the rollover: the next day's
        ("EURUSD", (2026, 1, 9, 15), (2026, 1, 9, 22)),  # Friday: the week's close
        ("EURUSD", (2026, 1, 10, 12), (2026, 1, 12, 22)),  # Saturday, closed: Monday's day (opens Sunday 22:00)
        ("XAUUSD", (2026, 1, 7, 10), (2026, 1, 7, 21)),  # gold pauses at 21:00
        ("XAUUSD", (2026, 1, 7, 21, 30), (2026, 1, 8, 21)),  # in the pause: the next session's day
        ("BTCUSD", (2026, 1, 10, 12), (2026, 1, 10, 22)),  # crypto never closes: the rollover, Saturday too
    ],
)
def test_a_day_order_ends_at_its_sessions_close_or_the_rollover(symbol, submitted, ends):
    assert rules.day_end_ns(INSTRUMENTS[symbol].session, utc_ns(*submitted), 22) == utc_ns(*ends)
