"""SimulatedTerminal as a MetaTrader5 module: errors, symbols, clock, selection."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from client.metatrader_connector.terminal import SimulatedTerminal, open_terminal
from client.metatrader_connector.terminal import constants as c
from client.metatrader_connector.terminal.records import SymbolInfo, Tick

NOW = datetime(2024, 3, 13, 15, 30, 12, 500_000, tzinfo=UTC)  # a Wednesday
NO_IPC = (-10004, "No IPC connection")
OK = (1, "Success")


class Clock:
    """A settable clock, injected instead of time.time."""

    def __init__(self, when: datetime) -> None:
        self.now = when.timestamp()

    def __call__(self) -> float:
        return self.now


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.fixture
def term() -> SimulatedTerminal:
    t = SimulatedTerminal(clock=Clock(NOW))
    assert t.initialize() is True
    return t


def test_everything_fails_with_no_ipc_before_initialize_and_after_shutdown():
    t = SimulatedTerminal(clock=Clock(NOW))
    calls = [
        lambda: t.copy_rates_from_pos("EURUSD", c.TIMEFRAME_M1, 0, 10),
        lambda: t.copy_ticks_range("EURUSD", utc(2024, 3, 12), utc(2024, 3, 13), c.COPY_TICKS_ALL),
        lambda: t.symbol_info("EURUSD"),
        lambda: t.symbol_info_tick("EURUSD"),
        t.account_info, t.terminal_info, t.version, t.symbols_get, t.symbols_total,
    ]  # fmt: skip
    for call in calls:
        assert call() is None
        assert t.last_error() == NO_IPC
    assert t.symbol_select("EURUSD") is False and t.last_error() == NO_IPC
    assert t.initialize() and t.last_error() == OK
    assert t.version() == (500, t.terminal_info().build, "20 Jun 2025")
    assert t.shutdown() is None
    assert t.symbol_info("EURUSD") is None and t.last_error() == NO_IPC


def test_unknown_symbols_and_bad_arguments(term):
    assert term.symbol_info("EURUSDx") is None
    assert term.last_error() == (c.RES_E_NOT_FOUND, "Terminal: Not found")
    assert term.symbol_info_tick("NOPE") is None and term.last_error()[0] == c.RES_E_NOT_FOUND
    assert term.copy_rates_from_pos("NOPE", c.TIMEFRAME_M1, 0, 10) is None
    assert term.last_error() == (c.RES_E_FAIL, "Terminal: Call failed")
    assert term.copy_ticks_from("NOPE", utc(2024, 3, 12), 10, c.COPY_TICKS_ALL) is None
    assert term.symbol_select("NOPE", True) is False and term.last_error()[0] == c.RES_E_FAIL
    invalid = (c.RES_E_INVALID_PARAMS, "Terminal: Invalid params")
    assert term.copy_rates_from_pos("EURUSD", 7, 0, 10) is None and term.last_error() == invalid
    assert term.copy_rates_from_pos("EURUSD", c.TIMEFRAME_M1, 0, 0) is None
    assert term.copy_rates_from("EURUSD", c.TIMEFRAME_M1, "yesterday", 5) is None
    assert term.copy_ticks_range("EURUSD", utc(2024, 3, 12), utc(2024, 3, 11), c.COPY_TICKS_ALL) is None
    assert term.copy_ticks_from("EURUSD", utc(2024, 3, 12), 5, 99) is None
    assert term.copy_rates_range("EURUSD", c.TIMEFRAME_M1, utc(2023, 1, 1), utc(2024, 1, 1)) is None
    assert term.last_error() == invalid  # more than maxbars M1 slots, like MT5
    assert term.initialize(login="12345") is False and term.last_error() == invalid
    assert term.copy_rates_from_pos("EURUSD", c.TIMEFRAME_M1, 0, 3) is not None
    assert term.last_error() == OK


def test_info_records_have_mt5_fields(term):
    info = term.symbol_info("EURUSD")
    assert isinstance(info, SymbolInfo)
    assert (info.name, info.digits, info.point, info.trade_contract_size) == ("EURUSD", 5, 1e-05, 100_000.0)
    assert (info.currency_base, info.currency_profit, info.visible, info.select) == ("EUR", "USD", True, True)
    assert info.trade_mode == c.SYMBOL_TRADE_MODE_FULL and info.volume_min == 0.01
    assert info.ask > info.bid and info.spread == round((info.ask - info.bid) / info.point)
    assert info.bidlow <= info.bid <= info.bidhigh
    assert term.symbol_info("XAUUSD").digits == 2 and term.symbol_info("BTCUSD").trade_contract_size == 1.0
    account = term.account_info()
    assert (account.balance, account.equity, account.currency, account.leverage) == (10_000.0, 10_000.0, "USD", 100)
    assert account.trade_mode == c.ACCOUNT_TRADE_MODE_DEMO
    assert term.login(5550123, password="secret", server="Other-Demo")
    assert (term.account_info().login, term.account_info().server) == (5550123, "Other-Demo")
    assert term.terminal_info().connected and term.terminal_info().maxbars == 100_000
    assert set(info._asdict()) >= {"name", "description", "spread", "volume_step", "volume_max", "time"}


def test_constants_are_attributes_like_the_module(term):
    assert term.TIMEFRAME_M1 == 1 and term.TIMEFRAME_H1 == 16385 and term.TIMEFRAME_D1 == 16408
    assert term.TIMEFRAME_W1 == 32769 and term.TIMEFRAME_MN1 == 49153 and term.TIMEFRAME_H3 == 16387
    assert (term.COPY_TICKS_ALL, term.COPY_TICKS_INFO, term.COPY_TICKS_TRADE) == (-1, 1, 2)
    assert (term.TICK_FLAG_BID, term.TICK_FLAG_ASK, term.TICK_FLAG_LAST) == (2, 4, 8)
    assert (term.TICK_FLAG_VOLUME, term.TICK_FLAG_BUY, term.TICK_FLAG_SELL) == (16, 32, 64)
    assert (term.RES_S_OK, term.RES_E_FAIL, term.RES_E_INVALID_PARAMS, term.RES_E_NOT_FOUND) == (1, -1, -2, -4)
    assert (term.RES_E_INTERNAL_FAIL, term.RES_E_INTERNAL_FAIL_CONNECT) == (-10000, -10004)


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        (None, ["EURUSD", "GBPUSD", "XAUUSD", "BTCUSD"]),
        ("*", ["EURUSD", "GBPUSD", "XAUUSD", "BTCUSD"]),
        ("*USD*,!XAU*", ["EURUSD", "GBPUSD", "BTCUSD"]),
        ("EUR*,GBP*", ["EURUSD", "GBPUSD"]),
        ("*,!*USD", []),
        ("!BTC*", ["EURUSD", "GBPUSD", "XAUUSD"]),
        ("xau*", ["XAUUSD"]),
        ("Forex\\*", ["EURUSD", "GBPUSD"]),
        ("*JPY*", []),
    ],
)
def test_group_masks(term, group, expected):
    assert [s.name for s in term.symbols_get(group=group)] == expected
    assert term.symbols_total() == 4


def test_symbol_selection_gates_the_live_quote(term):
    assert term.symbol_select("GBPUSD", False)
    assert not term.symbol_info("GBPUSD").visible
    assert term.symbol_info_tick("GBPUSD") is None and term.last_error()[0] == c.RES_E_FAIL
    assert term.symbol_select("GBPUSD")
    assert isinstance(term.symbol_info_tick("GBPUSD"), Tick)


def test_date_arguments_naive_aware_and_seconds_agree(term):
    aware, naive = utc(2024, 3, 12, 9), datetime(2024, 3, 12, 9)
    seconds = int(aware.timestamp())
    results = [term.copy_rates_from("EURUSD", c.TIMEFRAME_M5, when, 20) for when in (aware, naive, seconds)]
    assert all(np.array_equal(results[0], r) for r in results[1:])
    assert results[0]["time"][-1] == seconds and len(results[0]) == 20
    cet = aware.astimezone(timezone(timedelta(hours=1)))
    assert np.array_equal(term.copy_rates_from("EURUSD", c.TIMEFRAME_M5, cet, 20), results[0])


def test_copy_rates_from_pos_follows_the_injected_clock():
    clock = Clock(NOW)
    t = SimulatedTerminal(clock=clock)
    t.initialize()
    bars = t.copy_rates_from_pos("EURUSD", c.TIMEFRAME_M1, 0, 30)
    assert len(bars) == 30 and np.all(np.diff(bars["time"]) > 0)
    assert bars["time"][-1] == int(clock.now) // 60 * 60  # position 0: the forming bar
    tick = t.symbol_info_tick("EURUSD")
    assert tick.time_msc <= clock.now * 1000 and bars["close"][-1] == tick.bid
    future = t.copy_ticks_range("EURUSD", NOW, NOW + timedelta(hours=2), c.COPY_TICKS_ALL)
    assert future["time_msc"].max() <= clock.now * 1000  # nothing after now exists

    clock.now += 180  # three minutes later
    later = t.copy_rates_from_pos("EURUSD", c.TIMEFRAME_M1, 0, 30)
    assert later["time"][-1] == bars["time"][-1] + 180
    # Completed bars are final; the formerly forming bar has grown.
    assert np.array_equal(later[:-4], bars[3:-1])
    assert later[-4]["tick_volume"] >= bars[-1]["tick_volume"]
    shifted = t.copy_rates_from_pos("EURUSD", c.TIMEFRAME_M1, 3, 27)
    assert np.array_equal(shifted, later[:-3])
    h1 = t.copy_rates_from_pos("EURUSD", c.TIMEFRAME_H1, 0, 48)
    assert h1["time"][-1] == int(clock.now) // 3600 * 3600 and len(h1) == 48


def test_weekend_clock_sees_friday_as_the_last_data():
    t = SimulatedTerminal(clock=Clock(utc(2024, 3, 9, 12)))  # Saturday noon
    t.initialize()
    tick = t.symbol_info_tick("EURUSD")
    assert datetime.fromtimestamp(tick.time, UTC).weekday() == 4  # Friday
    bars = t.copy_rates_from_pos("EURUSD", c.TIMEFRAME_H1, 0, 3)
    assert bars["time"][-1] == utc(2024, 3, 8, 21).timestamp()  # last hour before 22:00
    btc = t.copy_rates_from_pos("BTCUSD", c.TIMEFRAME_H1, 0, 2)
    assert btc["time"][-1] == utc(2024, 3, 9, 11).timestamp()  # nothing at 12:00:00.000 yet
    t._clock.now += 600
    btc = t.copy_rates_from_pos("BTCUSD", c.TIMEFRAME_H1, 0, 2)
    assert btc["time"][-1] == utc(2024, 3, 9, 12).timestamp()


def test_tick_flags_argument(term):
    start, end = utc(2024, 3, 12, 10), utc(2024, 3, 12, 10, 5)
    assert term.copy_ticks_range("EURUSD", start, end, c.COPY_TICKS_TRADE).size == 0
    trades = term.copy_ticks_range("BTCUSD", start, end, c.COPY_TICKS_TRADE)
    info = term.copy_ticks_range("BTCUSD", start, end, c.COPY_TICKS_INFO)
    every = term.copy_ticks_range("BTCUSD", start, end, c.COPY_TICKS_ALL)
    assert 0 < trades.size < every.size and 0 < info.size < every.size
    assert np.all(trades["volume_real"] > 0)
    first = term.copy_ticks_from("BTCUSD", start, trades.size + 5, c.COPY_TICKS_TRADE)
    assert np.array_equal(first[: trades.size], trades) and first.size == trades.size + 5


def test_open_terminal_picks_the_simulator_without_metatrader5():
    if importlib.util.find_spec("MetaTrader5") is not None:
        pytest.skip("the real MetaTrader5 package is installed")
    t = open_terminal(seed=7, symbols=["EURUSD", "BTCUSD"], clock=Clock(NOW))
    assert isinstance(t, SimulatedTerminal)
    assert t.initialize() and [s.name for s in t.symbols_get()] == ["EURUSD", "BTCUSD"]
    with pytest.raises(ImportError, match="Windows"):
        open_terminal(mode="metatrader5")
    with pytest.raises(ValueError, match="mode"):
        open_terminal(mode="wine")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="USDJPY"):
        open_terminal(mode="simulated", symbols=["USDJPY"])


def test_open_terminal_mt5linux_missing_package_is_a_clear_error():
    if importlib.util.find_spec("mt5linux") is not None:
        pytest.skip("mt5linux is installed")
    with pytest.raises(ImportError, match="pip install mt5linux"):
        open_terminal(mode="mt5linux", mt5linux_host="10.0.0.5")
    with pytest.raises(ImportError, match="mt5linux"):
        open_terminal(mt5linux_host="10.0.0.5")  # auto: a host asks for the bridge
