"""The platform's one trading calendar (shared.market_hours), and that the simulated terminal trades by it."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from client.metatrader_connector.terminal.symbols import DEFAULT_SPECS, hourly_tables
from shared.market_hours import DEFAULT_SESSIONS, MarketHours, open_hours


def ns(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp() * 1e9)


# 2026-01-02 is a Friday, 2026-01-04 a Sunday, 2026-01-07 a Wednesday.
@pytest.mark.parametrize(
    ("symbol", "at", "is_open"),
    [
        ("EURUSD", "2026-01-02T21:59", True),
        ("EURUSD", "2026-01-02T22:00", False),
        ("EURUSD", "2026-01-03T12:00", False),
        ("EURUSD", "2026-01-04T21:59", False),
        ("EURUSD", "2026-01-04T22:00", True),
        ("XAUUSD", "2026-01-07T21:30", False),  # metals pause daily 21:00-22:00
        ("XAUUSD", "2026-01-07T22:00", True),
        ("XAUUSD", "2026-01-02T21:00", False),  # gold's Friday close is 21:00
        ("BTCUSD", "2026-01-03T12:00", True),
        ("UNKNOWN", "2026-01-03T12:00", False),  # unknown symbols follow fx
    ],
)
def test_sessions_by_symbol_and_hour(symbol, at, is_open):
    assert MarketHours().is_open(symbol, ns(at)) is is_open


def test_configured_sessions_override_and_unknown_calendars_are_refused():
    assert MarketHours({"UNKNOWN": "crypto"}).is_open("UNKNOWN", ns("2026-01-03T12:00"))
    with pytest.raises(ValueError, match="unknown session"):
        MarketHours({"X": "lunar"})


def test_the_simulated_terminal_trades_by_the_same_calendar():
    for name, spec in DEFAULT_SPECS.items():
        assert spec.session == DEFAULT_SESSIONS[name]
        is_open, _, ticks = hourly_tables(spec)
        assert np.array_equal(is_open, open_hours(spec.session))
        assert not ticks[~is_open].any()  # no tick while closed
