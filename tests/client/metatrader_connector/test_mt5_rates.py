"""Bars: consistent with the ticks, MT5's dtypes and bar conventions."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from client.metatrader_connector.terminal import SimulatedTerminal
from client.metatrader_connector.terminal import constants as c

NOW = datetime(2024, 3, 13, 15, 30, 12, tzinfo=UTC).timestamp()  # a Wednesday

MT5_RATES = [
    ("time", "<i8"), ("open", "<f8"), ("high", "<f8"), ("low", "<f8"), ("close", "<f8"),
    ("tick_volume", "<u8"), ("spread", "<i4"), ("real_volume", "<u8"),
]  # fmt: skip
MT5_TICKS = [
    ("time", "<i8"), ("bid", "<f8"), ("ask", "<f8"), ("last", "<f8"), ("volume", "<u8"),
    ("time_msc", "<i8"), ("flags", "<u4"), ("volume_real", "<f8"),
]  # fmt: skip


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def terminal() -> SimulatedTerminal:
    term = SimulatedTerminal(clock=lambda: NOW)
    assert term.initialize()
    return term


def bars_from_ticks(ticks: np.ndarray, period: int, point: float) -> np.ndarray:
    """Reference aggregation written independently of the implementation."""
    rows = []
    keys = ticks["time"] // period * period
    for key in np.unique(keys):
        group = ticks[keys == key]
        rows.append(
            (
                key, group["bid"][0], group["bid"].max(), group["bid"].min(), group["bid"][-1],
                group.size, round((group["ask"][0] - group["bid"][0]) / point),
                round(group["volume_real"].sum()),
            )
        )  # fmt: skip
    return np.array(rows, dtype=np.dtype(MT5_RATES))


def test_dtypes_are_exactly_mt5s():
    term = terminal()
    rates = term.copy_rates_from_pos("EURUSD", c.TIMEFRAME_M5, 0, 10)
    ticks = term.copy_ticks_from("EURUSD", utc(2024, 3, 12), 10, c.COPY_TICKS_ALL)
    assert rates.dtype == np.dtype(MT5_RATES)
    assert ticks.dtype == np.dtype(MT5_TICKS)
    empty = term.copy_rates_range("EURUSD", c.TIMEFRAME_H1, utc(2024, 3, 9), utc(2024, 3, 9, 20))
    assert empty.size == 0 and empty.dtype == np.dtype(MT5_RATES)  # Saturday: no bars


def test_m1_and_h1_bars_are_the_ohlc_of_bid_ticks():
    term = terminal()
    start, end = utc(2024, 3, 12, 6), utc(2024, 3, 12, 9, 59, 59)
    for symbol in ("EURUSD", "BTCUSD"):
        point = term.symbol_info(symbol).point
        # date_to is a whole second (time_msc <= 10:00:00.000): drop that instant.
        ticks = term.copy_ticks_range(symbol, start, utc(2024, 3, 12, 10), c.COPY_TICKS_ALL)
        ticks = ticks[ticks["time"] < utc(2024, 3, 12, 10).timestamp()]
        m1 = term.copy_rates_range(symbol, c.TIMEFRAME_M1, start, end)
        h1 = term.copy_rates_range(symbol, c.TIMEFRAME_H1, start, end)
        assert np.array_equal(m1, bars_from_ticks(ticks, 60, point))
        assert np.array_equal(h1, bars_from_ticks(ticks, 3600, point))
        assert len(h1) == 4 and h1["tick_volume"].sum() == ticks.size


def test_d1_bar_covers_the_whole_day_of_ticks():
    term = terminal()
    ticks = term.copy_ticks_range("XAUUSD", utc(2024, 3, 12), utc(2024, 3, 13), c.COPY_TICKS_ALL)
    ticks = ticks[ticks["time"] < utc(2024, 3, 13).timestamp()]
    (d1,) = term.copy_rates_range("XAUUSD", c.TIMEFRAME_D1, utc(2024, 3, 12), utc(2024, 3, 12))
    assert d1["time"] == utc(2024, 3, 12).timestamp()
    assert (d1["open"], d1["close"]) == (ticks["bid"][0], ticks["bid"][-1])
    assert (d1["high"], d1["low"]) == (ticks["bid"].max(), ticks["bid"].min())
    assert d1["tick_volume"] == ticks.size


def test_minutes_without_ticks_have_no_bar():
    term = terminal()
    weekend = term.copy_rates_range("EURUSD", c.TIMEFRAME_M1, utc(2024, 3, 8, 22), utc(2024, 3, 10, 21, 59))
    assert weekend.size == 0
    gold_break = term.copy_rates_range("XAUUSD", c.TIMEFRAME_M1, utc(2024, 3, 12, 20), utc(2024, 3, 12, 22, 59))
    assert not np.any((gold_break["time"] % 86_400) // 3600 == 21)
    btc = term.copy_rates_range("BTCUSD", c.TIMEFRAME_H1, utc(2024, 3, 9), utc(2024, 3, 9, 23))
    assert btc.size == 24


def test_weekly_bars_open_on_sunday_and_monthly_on_the_first():
    term = terminal()
    w1 = term.copy_rates_range("EURUSD", c.TIMEFRAME_W1, utc(2024, 2, 1), utc(2024, 3, 1))
    assert all(datetime.fromtimestamp(t, UTC).weekday() == 6 for t in w1["time"])
    assert len(w1) == 4  # Sundays 4, 11, 18 and 25 February
    mn1 = term.copy_rates_range("EURUSD", c.TIMEFRAME_MN1, utc(2024, 3, 1), utc(2024, 3, 1))
    (march,) = mn1
    d1 = term.copy_rates_range("EURUSD", c.TIMEFRAME_D1, utc(2024, 3, 1), utc(2024, 3, 13))
    assert march["time"] == utc(2024, 3, 1).timestamp()
    assert march["tick_volume"] == d1["tick_volume"].sum()  # the month so far
    assert (march["high"], march["low"]) == (d1["high"].max(), d1["low"].min())


def test_higher_timeframes_aggregate_lower_ones():
    term = terminal()
    m15 = term.copy_rates_range("GBPUSD", c.TIMEFRAME_M15, utc(2024, 3, 11), utc(2024, 3, 11, 23, 59))
    h4 = term.copy_rates_range("GBPUSD", c.TIMEFRAME_H4, utc(2024, 3, 11), utc(2024, 3, 11, 23, 59))
    assert len(h4) == 6
    for bar in h4:
        inside = m15[(m15["time"] >= bar["time"]) & (m15["time"] < bar["time"] + 4 * 3600)]
        assert bar["open"] == inside["open"][0] and bar["close"] == inside["close"][-1]
        assert bar["high"] == inside["high"].max() and bar["low"] == inside["low"].min()
        assert bar["tick_volume"] == inside["tick_volume"].sum()
        assert bar["spread"] == inside["spread"][0]
