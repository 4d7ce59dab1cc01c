"""The bots' brain: signals and RSI strategies, dedup of redelivered inputs (also across a restart),
sizing and stops into intents, deterministic client order ids, and the memory's JSON round trip."""

from __future__ import annotations

import json
import random
from decimal import Decimal as D

from services.trading_engine.bots.brain import BotBrain
from services.trading_engine.bots.memory import BotMemory
from services.trading_engine.bots.model import Bot, Holding
from services.trading_engine.bots.stops import StopTracker
from services.trading_engine.bots.strategies import BarInput, SignalInput
from shared.events import Timeframe
from shared.strategies.rsi import RsiSeries, RsiThresholds
from tests.services.trading_engine.bots_support import MINUTE, T0, bot, market, validated, vector

FLAT = Holding()


def long(qty: str = "0.01", price: str = "1.1") -> Holding:
    return Holding("long", D(qty), D(price))


def restarted(b: Bot) -> BotBrain:
    """The bot as a restart finds it: its memory through JSON (as the bots table stores it)."""
    memory = BotMemory.from_json(json.loads(json.dumps(b.memory.to_json())))
    return BotBrain(Bot(**{**b.__dict__, "memory": memory}))


# -- "signals" -----------------------------------------------------------------------------------


def test_an_entry_signal_becomes_one_sized_intent_with_its_attribution():
    brain = BotBrain(bot(lots="0.03"))
    signal = validated("enter_long", 1)
    out = brain.on_input(SignalInput(signal), FLAT, market())
    intent = out.intent
    assert out.processed and intent is not None
    assert (intent.action, intent.side, intent.quantity, intent.symbol, intent.account_id) == (
        "open_long",
        "buy",
        D("0.03"),
        "EURUSD",
        "paper-1",
    )
    assert intent.client_order_id.startswith("bot-") and len(intent.client_order_id) == 36
    assert intent.attribution.signal_id == signal.signal.event_id
    assert intent.attribution.models == ["xgb-direction:3"] and intent.attribution.bot_id == brain.bot.bot_id
    assert brain.bot.memory.last_input_ns == T0 + MINUTE and brain.bot.memory.intents == 1


def test_a_fixed_lot_entry_without_stops_needs_no_quote_one_with_a_stop_does():
    """A restarted engine has no quote until its first tick: an entry that needs no price must not
    be lost to that gap (it would be remembered as processed, its offset committed)."""
    no_quote = market(bid=None, ask=None)
    out = BotBrain(bot(lots="0.02")).on_input(SignalInput(validated("enter_long", 1)), FLAT, no_quote)
    assert out.intent is not None and out.intent.quantity == D("0.02") and out.intent.stop_loss is None
    stopped = BotBrain(bot(lots="0.02", stop_loss="distance", stop_distance="0.0050"))
    out = stopped.on_input(SignalInput(validated("enter_long", 1)), FLAT, no_quote)
    assert out.intent is None  # its stop is a distance from the entry price: it must wait for one


def test_the_signal_actions_against_the_position():
    cases = [
        ("enter_long", FLAT, "open_long", "buy"),
        ("enter_short", FLAT, "open_short", "sell"),
        ("enter_short", long("0.2"), "close", "sell"),  # close first; no reversal in one order
        ("enter_long", long(), None, None),
        ("exit_long", long("0.2"), "close", "sell"),
        ("exit_long", FLAT, None, None),
        ("exit_short", Holding("short", D("0.1"), D("1.1")), "close", "buy"),
        ("hold", long(), None, None),
    ]
    for i, (action, holding, wanted, side) in enumerate(cases):
        out = BotBrain(bot()).on_input(SignalInput(validated(action, i)), holding, market())
        got = None if out.intent is None else (out.intent.action, out.intent.side)
        assert got == (None if wanted is None else (wanted, side)), (action, holding, out.reason)
        if wanted == "close":
            assert out.intent.quantity == holding.quantity


def test_entries_need_the_minimum_confidence_and_strength_exits_do_not():
    brain = BotBrain(bot(min_confidence=0.8, min_strength=0.5))
    out = brain.on_input(SignalInput(validated("enter_long", 1, confidence=0.79)), FLAT, market())
    assert out.intent is None and out.processed and "confidence" in out.reason
    out = brain.on_input(SignalInput(validated("enter_long", 2, confidence=0.9, strength=0.4)), FLAT, market())
    assert out.intent is None and "strength" in out.reason
    out = brain.on_input(SignalInput(validated("exit_long", 3, confidence=0.1, strength=0.0)), long(), market())
    assert out.intent is not None and out.intent.action == "close"


def test_a_redelivered_signal_never_becomes_a_second_intent():
    brain = BotBrain(bot())
    signal = validated("enter_long", 1)
    assert brain.on_input(SignalInput(signal), FLAT, market()).intent is not None
    again = brain.on_input(SignalInput(signal), FLAT, market())
    assert again.intent is None and not again.processed
    # re-emitted for the same bar with another direction: not newer than the last input
    other = brain.on_input(SignalInput(validated("enter_short", 1)), FLAT, market())
    assert other.intent is None and "replay" in other.reason


def test_the_dedup_window_survives_a_restart():
    b = bot()
    brain = BotBrain(b)
    first = validated("enter_long", 1)
    assert brain.on_input(SignalInput(first), FLAT, market()).intent is not None
    # the same signal re-emitted later in the same minute (newer event time, same fingerprint)
    later = first.model_copy(update={"signal": first.signal.model_copy(update={"ts_event": T0 + MINUTE + 10**9})})
    after_restart = restarted(b).on_input(SignalInput(later), FLAT, market())
    assert after_restart.intent is None and "SignalDeduplicator" in after_restart.reason
    # a new signal of the next bar is taken
    assert restarted(b).on_input(SignalInput(validated("enter_long", 2)), FLAT, market()).processed


def test_a_crash_between_submit_and_save_decides_again_with_the_same_client_order_id():
    b = bot()
    saved = json.dumps(b.memory.to_json())  # the memory as stored before the input
    signal = validated("enter_short", 4)
    first = BotBrain(b).on_input(SignalInput(signal), FLAT, market()).intent
    b.memory = BotMemory.from_json(json.loads(saved))  # crashed before saving
    second = BotBrain(b).on_input(SignalInput(signal), FLAT, market()).intent
    assert first is not None and second is not None and first.client_order_id == second.client_order_id
    other = BotBrain(bot()).on_input(SignalInput(validated("enter_short", 5)), FLAT, market()).intent
    assert other.client_order_id != first.client_order_id


def test_a_bot_that_is_not_running_takes_no_input_and_other_series_are_not_its():
    paused = BotBrain(bot(state="paused"))
    assert not paused.on_input(SignalInput(validated("enter_long", 1)), FLAT, market()).processed
    brain = BotBrain(bot())
    assert not brain.on_input(SignalInput(validated("enter_long", 1, symbol="GBPUSD")), FLAT, market()).processed
    assert not brain.on_input(SignalInput(validated("enter_long", 1, timeframe=Timeframe.M5)), FLAT, market()).processed
    assert not brain.on_input(BarInput(vector(1, 20.0)), FLAT, market()).processed  # a signals bot's input
    assert brain.bot.memory.last_input_ns == -1


# -- sizing and stops through the brain ------------------------------------------------------------


def test_fixed_fractional_with_an_atr_stop_sizes_from_the_stop_and_places_it():
    b = bot(sizing="fixed_fractional", risk_fraction="0.01", stop_loss="atr", stop_atr_multiple="2")
    brain = BotBrain(b)
    out = brain.on_input(SignalInput(validated("enter_long", 1)), FLAT, market(ask="1.10000", atr=D("0.001")))
    # stop 1.10000 - 2 x 0.001 = 1.09800: 20 pips = 200 USD per lot; 1% of 10,000 -> 0.50 lots
    assert out.intent is not None and out.intent.quantity == D("0.50") and out.intent.stop_loss == D("1.09800")
    no_atr = BotBrain(bot(sizing="fixed_fractional", risk_fraction="0.01", stop_loss="atr", stop_atr_multiple="2"))
    out = no_atr.on_input(SignalInput(validated("enter_long", 1)), FLAT, market())
    assert out.intent is None and "ATR" in out.reason and out.processed
    tiny = BotBrain(bot(sizing="fixed_fractional", risk_fraction="0.01", stop_loss="distance", stop_distance="0.002"))
    out = tiny.on_input(SignalInput(validated("enter_long", 1)), FLAT, market(equity="50"))
    assert out.intent is None and "below the minimum" in out.reason


def test_a_fill_arms_the_stops_and_a_touch_closes_once():
    b = bot(stop_loss="distance", stop_distance="0.0020", trailing="distance", trail_distance="0.0010")
    brain = BotBrain(b)
    assert brain.on_input(SignalInput(validated("enter_long", 1)), FLAT, market()).intent is not None
    assert brain.on_position(Holding("long", D("0.01"), D("1.10010")))
    assert b.memory.stops is not None and b.memory.stops.level == D("1.09910")  # the trail: 1.10010 - 0.0010
    assert brain.on_price(D("1.10100"), D("1.10110")) is None
    assert b.memory.stops.level == D("1.10000")  # the trail followed the bid up
    b.state = "paused"  # a paused bot's position stays protected
    close = brain.on_price(D("1.10000"), D("1.10010"))
    assert close is not None and (close.action, close.side, close.quantity) == ("close", "sell", D("0.01"))
    assert "trailing stop" in close.reason
    assert brain.on_price(D("1.09000"), D("1.09010")) is None  # fired once
    assert brain.on_position(FLAT) and b.memory.stops is None and b.memory.position == "flat"


def test_the_stop_close_of_a_redelivered_quote_is_the_same_order():
    b = bot(stop_loss="distance", stop_distance="0.0020")
    brain = BotBrain(b)
    brain.on_input(SignalInput(validated("enter_long", 1)), FLAT, market())
    brain.on_position(Holding("long", D("0.01"), D("1.1")))
    saved = json.dumps(b.memory.to_json())
    first = brain.on_price(D("1.0980"), D("1.0981"))
    b.memory = BotMemory.from_json(json.loads(saved))
    second = BotBrain(b).on_price(D("1.0980"), D("1.0981"))
    assert first is not None and second is not None and first.client_order_id == second.client_order_id


# -- "rsi" -----------------------------------------------------------------------------------------


def test_the_rsi_bot_waits_for_maturity_then_enters_and_exits():
    brain = BotBrain(bot("rsi", rsi_maturity_bars=3))
    outs = [brain.on_input(BarInput(vector(m, 20.0)), FLAT, market()) for m in (1, 2)]
    assert all(o.intent is None and "immature" in o.reason for o in outs)
    entry = brain.on_input(BarInput(vector(3, 28.5)), FLAT, market())
    assert entry.intent is not None and entry.intent.action == "open_long" and "28.50 <= 29.0" in entry.reason
    assert brain.on_input(BarInput(vector(4, 64.9)), long(), market()).intent is None
    exit_ = brain.on_input(BarInput(vector(5, 65.0)), long(), market())
    assert exit_.intent is not None and exit_.intent.action == "close"
    short = brain.on_input(BarInput(vector(6, 71.0)), FLAT, market())
    assert short.intent is not None and short.intent.action == "open_short"
    assert brain.bot.memory.bars == 6


def test_the_trend_filter_blocks_an_entry_against_the_higher_timeframe():
    brain = BotBrain(bot("rsi", rsi_maturity_bars=0))
    assert brain.on_trend(vector(0, None, close=1.09, ema_50=1.10, timeframe=Timeframe.H1))  # down
    blocked = brain.on_input(BarInput(vector(1, 20.0)), FLAT, market())
    assert blocked.intent is None and "trend down" in blocked.reason
    short = brain.on_input(BarInput(vector(2, 80.0)), FLAT, market())
    assert short.intent is not None and short.intent.action == "open_short"


def test_the_rsi_bot_trades_the_same_rule_as_ai_orchestration():
    rng = random.Random(11)
    readings = [rng.choice([None, rng.uniform(10, 90)]) if i < 5 else rng.uniform(10, 90) for i in range(400)]
    series, rules = RsiSeries(), RsiThresholds(maturity_bars=20)
    b = bot("rsi", rsi_maturity_bars=20)
    brain, holding = BotBrain(b), FLAT
    for minute, rsi in enumerate(readings, start=1):
        proposal = series.propose(rsi, None, rules)
        series.commit(proposal.action)
        out = brain.on_input(BarInput(vector(minute, rsi)), holding, market())
        got = "hold" if out.intent is None else out.intent.action
        wanted = {"enter_long": "open_long", "enter_short": "open_short", "exit_long": "close", "exit_short": "close"}
        assert got == wanted.get(proposal.action, "hold"), (minute, rsi)
        holding = {"long": long(), "short": Holding("short", D("0.01"), D("1.1")), "flat": FLAT}[series.position]
    assert b.memory.intents > 4  # it traded


# -- memory -----------------------------------------------------------------------------------------


def test_the_memory_round_trips_through_json_exactly():
    stops = StopTracker("long", D("1.1"), D("1.098"), D("0.001"), D("1.1023"))
    memory = BotMemory(
        position="long",
        quantity=D("0.37"),
        entry_price=D("1.10010"),
        stops=stops,
        entry_atr=D("0.00091"),
        bars=123,
        trend="up",
        last_input_ns=T0 + 5 * MINUTE,
        last_input_id="0b8c3d9e-0000-5000-8000-000000000001",
        fingerprints=[("ab" * 32, T0), ("cd" * 32, T0 + MINUTE)],
        intents=9,
    )
    again = BotMemory.from_json(json.loads(json.dumps(memory.to_json())))
    assert again == memory
    assert BotMemory.from_json(json.loads(json.dumps(BotMemory().to_json()))) == BotMemory()
