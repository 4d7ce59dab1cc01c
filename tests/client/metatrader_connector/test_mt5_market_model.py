"""The generator: determinism, sessions, spreads, gaps and tick realism."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from client.metatrader_connector.terminal import SimulatedTerminal
from client.metatrader_connector.terminal import constants as c
from client.metatrader_connector.terminal.market_model import MarketModel, day_index
from client.metatrader_connector.terminal.symbols import DEFAULT_SPECS

SEED = 20240101
NOW = datetime(2024, 3, 13, 15, 30, 12, tzinfo=UTC).timestamp()  # a Wednesday


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def model(symbol: str, seed: int = SEED) -> MarketModel:
    return MarketModel(DEFAULT_SPECS[symbol], seed)


def terminal(**kwargs) -> SimulatedTerminal:
    term = SimulatedTerminal(clock=lambda: NOW, **kwargs)
    assert term.initialize()
    return term


def day_of(*args: int) -> int:
    return day_index(utc(*args).timestamp())


def hours(ticks: np.ndarray) -> np.ndarray:
    return (ticks["time"] % 86_400) // 3600


# --- determinism ------------------------------------------------------------------
def test_same_day_is_identical_across_calls_instances_and_order():
    day = day_of(2024, 3, 12)
    first = model("EURUSD").day_ticks(day)
    other = model("EURUSD")
    other.day_ticks(day + 40)  # a later day first: the daily cache grows past it
    assert np.array_equal(first, other.day_ticks(day))
    assert np.array_equal(first, model("EURUSD").day_ticks(day))


def test_seed_and_symbol_change_the_data():
    day = day_of(2024, 3, 12)
    base = model("EURUSD").day_ticks(day)
    assert not np.array_equal(base["bid"][:100], model("EURUSD", SEED + 1).day_ticks(day)["bid"][:100])
    assert base.size != model("GBPUSD").day_ticks(day).size


@settings(max_examples=8, deadline=None)
@given(cut=st.integers(min_value=1, max_value=2 * 86_400 - 1))
def test_split_ranges_equal_one_range(cut):
    start = int(utc(2024, 3, 11, 12).timestamp())
    end = start + 2 * 86_400
    whole = terminal().copy_ticks_range("EURUSD", start, end, c.COPY_TICKS_ALL)
    later_first = terminal()  # a fresh terminal asked in reverse order
    second = later_first.copy_ticks_range("EURUSD", start + cut, end, c.COPY_TICKS_ALL)
    first = later_first.copy_ticks_range("EURUSD", start, start + cut, c.COPY_TICKS_ALL)
    # Both ranges are inclusive, so a tick exactly on the cut appears twice.
    second = second[second["time_msc"] > (start + cut) * 1000]
    assert np.array_equal(np.concatenate((first, second)), whole)


# --- prices, flags, trades ------------------------------------------------------
def test_quotes_are_positive_rounded_and_ask_above_bid():
    for symbol, spec in DEFAULT_SPECS.items():
        ticks = model(symbol).day_ticks(day_of(2024, 3, 12))
        assert ticks.dtype == c.TICKS_DTYPE
        assert np.all(ticks["bid"] > 0) and np.all(ticks["ask"] > ticks["bid"])
        assert np.array_equal(np.round(ticks["bid"], spec.digits), ticks["bid"])
        assert np.array_equal(np.round(ticks["ask"], spec.digits), ticks["ask"])
        assert np.all(np.diff(ticks["time_msc"]) >= 0)
        assert np.array_equal(ticks["time"], ticks["time_msc"] // 1000)


def test_reference_levels_are_realistic():
    levels = {"EURUSD": (0.9, 1.3), "GBPUSD": (1.05, 1.5), "XAUUSD": (1500, 2600), "BTCUSD": (25e3, 150e3)}
    for symbol, (low, high) in levels.items():
        bid = model(symbol).day_ticks(day_of(2024, 3, 12))["bid"]
        assert low < bid.min() and bid.max() < high, symbol


def test_flags_mark_what_changed():
    ticks = model("EURUSD").day_ticks(day_of(2024, 3, 12))
    bid_changed = np.diff(ticks["bid"]) != 0
    ask_changed = np.diff(ticks["ask"]) != 0
    flags = ticks["flags"][1:]
    assert np.array_equal((flags & c.TICK_FLAG_BID) != 0, bid_changed)
    assert np.array_equal((flags & c.TICK_FLAG_ASK) != 0, ask_changed)
    assert np.all(bid_changed | ask_changed)  # no tick repeats the previous quote


def test_fx_has_no_trades_and_btc_has_real_trades():
    fx = model("EURUSD").day_ticks(day_of(2024, 3, 12))
    assert not fx["last"].any() and not fx["volume"].any() and not fx["volume_real"].any()
    btc = model("BTCUSD").day_ticks(day_of(2024, 3, 12))
    trades = btc[(btc["flags"] & c.TICK_FLAG_LAST) != 0]
    assert 0.2 * btc.size < trades.size < 0.5 * btc.size
    assert np.all(trades["last"] > 0) and np.all(trades["volume_real"] > 0)
    assert np.all((trades["flags"] & c.TICK_FLAG_VOLUME) != 0)
    side = trades["flags"] & (c.TICK_FLAG_BUY | c.TICK_FLAG_SELL)
    assert set(np.unique(side)) == {c.TICK_FLAG_BUY, c.TICK_FLAG_SELL}
    buys = trades[side == c.TICK_FLAG_BUY]
    assert np.array_equal(buys["last"], buys["ask"])  # buyers lift the offer


def test_tick_intensity_follows_the_sessions():
    ticks = model("EURUSD").day_ticks(day_of(2024, 3, 12))
    per_hour = np.bincount(hours(ticks), minlength=24)
    assert 20_000 < ticks.size < 80_000
    assert per_hour.min() >= 100 and per_hour.max() <= 8_000
    assert per_hour[13:16].mean() > 2.5 * per_hour[1:5].mean()  # NY/London overlap vs Asia


def test_one_day_generates_well_under_100ms():
    m = model("EURUSD")
    m.day_ticks(day_of(2024, 3, 1))  # warm the daily-anchor cache
    started = time.perf_counter()
    m.day_ticks(day_of(2024, 3, 12))
    assert time.perf_counter() - started < 0.1


# --- sessions, spreads, gaps ------------------------------------------------------
def test_fx_and_gold_are_closed_over_the_weekend_and_btc_is_not():
    saturday, sunday, friday = day_of(2024, 3, 9), day_of(2024, 3, 10), day_of(2024, 3, 8)
    for symbol in ("EURUSD", "GBPUSD", "XAUUSD"):
        m = model(symbol)
        assert m.day_ticks(saturday).size == 0
        assert hours(m.day_ticks(sunday)).min() == 22  # opens Sunday 22:00 UTC
        assert hours(m.day_ticks(friday)).max() <= 21  # closes Friday 22:00 UTC
    assert model("BTCUSD").day_ticks(saturday).size > 10_000


def test_gold_pauses_daily_between_21_and_22_utc():
    for day in (day_of(2024, 3, 11), day_of(2024, 3, 12), day_of(2024, 3, 13)):
        h = hours(model("XAUUSD").day_ticks(day))
        assert not np.any(h == 21) and np.any(h == 20) and np.any(h == 22)
    assert np.any(hours(model("EURUSD").day_ticks(day_of(2024, 3, 12))) == 21)


def test_spread_widens_at_rollover_compared_with_london():
    point = DEFAULT_SPECS["EURUSD"].point
    london, rollover = [], []
    m = model("EURUSD")
    for day in range(day_of(2024, 3, 11), day_of(2024, 3, 15)):
        ticks = m.day_ticks(day)
        spread = (ticks["ask"] - ticks["bid"]) / point
        h = hours(ticks)
        london.append(spread[(h >= 8) & (h < 12)].mean())
        rollover.append(spread[h == 21].mean())
    assert np.mean(rollover) > 2.5 * np.mean(london)
    assert 3 < np.mean(london) < 15  # under 1.5 pips in liquid hours


def test_weekly_open_gaps_away_from_friday_close():
    gaps = []
    for friday in (day_of(2024, 3, 1), day_of(2024, 3, 8), day_of(2024, 3, 15), day_of(2024, 3, 22)):
        for symbol in ("EURUSD", "XAUUSD"):
            m = model(symbol)
            close = m.day_ticks(friday)["bid"][-1]
            opening = m.day_ticks(friday + 2)["bid"][0]
            gaps.append(abs(opening - close) / DEFAULT_SPECS[symbol].point)
    assert min(gaps) > 0
    assert 10 < np.mean(gaps) < 2_000
