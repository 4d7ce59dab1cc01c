"""Auto mode: which symbols get a bot from the recent validated signals (filters, no duplicate bot for
a symbol on the account, at most max_concurrent active bots)."""

from __future__ import annotations

import dataclasses

from services.trading_engine.bots.auto import AutoConfig, plan
from shared.events import Timeframe
from tests.services.trading_engine.bots_support import bot, validated


def config(**kw) -> AutoConfig:
    return AutoConfig(**{"enabled": True, "account_id": "paper-1", "min_confidence": 0.6, **kw})


def test_it_picks_confident_entries_most_confident_first():
    signals = [
        validated("enter_long", 1, symbol="EURUSD", confidence=0.65),
        validated("enter_short", 1, symbol="XAUUSD", confidence=0.9),
        validated("enter_long", 1, symbol="GBPUSD", confidence=0.59),  # below the minimum
        validated("hold", 1, symbol="BTCUSD", confidence=0.99),  # not an entry
        validated("exit_long", 2, symbol="BTCUSD", confidence=0.99),  # not an entry
    ]
    picks = plan(config(), signals, [])
    assert [p.symbol for p in picks] == ["XAUUSD", "EURUSD"]
    assert picks[0].signal.signal.symbol == "XAUUSD" and "enter_short" in picks[0].reason


def test_no_duplicate_bot_for_a_symbol_on_the_account_and_at_most_max_concurrent():
    signals = [validated("enter_long", 1, symbol=s, confidence=0.8) for s in ("EURUSD", "GBPUSD", "XAUUSD", "BTCUSD")]
    existing = [bot(symbol="EURUSD", state="running"), bot(symbol="XAUUSD", state="paused")]
    picks = plan(config(max_concurrent=3), signals, existing)
    assert [p.symbol for p in picks] == ["BTCUSD"]  # 2 active + 1 free place; EURUSD and XAUUSD taken
    assert plan(config(max_concurrent=2), signals, existing) == []
    assert [p.symbol for p in plan(config(max_concurrent=10), signals, existing)] == ["BTCUSD", "GBPUSD"]
    # stopped bots free their symbol and their place; another account's bots count for neither
    other = dataclasses.replace(bot(symbol="GBPUSD", state="running"), account_id="paper-2")
    done = [bot(symbol="EURUSD", state="stopped"), bot(symbol="XAUUSD", state="deleted"), other]
    assert [p.symbol for p in plan(config(max_concurrent=4), signals, done)] == ["BTCUSD", "EURUSD", "GBPUSD", "XAUUSD"]


def test_the_filters_symbols_timeframe_and_off_switch():
    signals = [
        validated("enter_long", 1, symbol="EURUSD", confidence=0.8),
        validated("enter_long", 1, symbol="GBPUSD", confidence=0.8, timeframe=Timeframe.M5),
        validated("enter_long", 1, symbol="ETHUSD", confidence=0.8),  # not a symbol the platform trades
    ]
    assert [p.symbol for p in plan(config(), signals, [])] == ["EURUSD"]
    assert plan(config(allowed_symbols=["GBPUSD"]), signals, []) == []
    assert plan(config(enabled=False), signals, []) == []
    assert plan(config(account_id=None), signals, []) == []


def test_the_newest_signal_of_a_symbol_counts():
    signals = [
        validated("enter_long", 1, symbol="EURUSD", confidence=0.9),
        validated("enter_short", 3, symbol="EURUSD", confidence=0.7),
    ]
    (pick,) = plan(config(), signals, [])
    assert pick.signal.signal.action == "enter_short"


def test_a_symbol_the_account_already_holds_gets_no_bot():
    signals = [validated("enter_long", 1, symbol=s, confidence=0.8) for s in ("EURUSD", "GBPUSD")]
    assert [p.symbol for p in plan(config(), signals, [], positions=["EURUSD"])] == ["GBPUSD"]
