"""Stop-loss and trailing stop held by the engine: levels, triggers on bid (long) and ask (short), a
trail that ratchets and never loosens, and the JSON round trip a restart needs."""

from __future__ import annotations

import itertools
from decimal import Decimal as D

import pytest

from services.trading_engine.bots.model import BotConfig
from services.trading_engine.bots.stops import AtrUnknown, StopTracker


def config(**kw) -> BotConfig:
    return BotConfig(**kw)


def test_a_fixed_stop_loss_below_a_long_triggers_on_the_bid():
    stops = StopTracker.open("long", D(100), config(stop_loss="distance", stop_distance="5"), None)
    assert stops.level == D(95)
    assert stops.on_price(D("95.01"), D("94.90") + D(1)) is None
    hit = stops.on_price(D(95), D(96))
    assert hit is not None and (hit.kind, hit.level, hit.price) == ("stop_loss", D(95), D(95))


def test_a_short_is_stopped_on_the_ask_not_the_bid():
    stops = StopTracker.open("short", D(100), config(stop_loss="distance", stop_distance="5"), None)
    assert stops.level == D(105)
    assert stops.on_price(D("105.2"), D("104.99")) is None  # the bid above the stop does not close a short
    hit = stops.on_price(D("104.9"), D(105))
    assert hit is not None and hit.kind == "stop_loss" and hit.price == D(105)


def test_an_atr_stop_is_a_multiple_of_the_atr_and_needs_it():
    stops = StopTracker.open("long", D(100), config(stop_loss="atr", stop_atr_multiple="2"), D("1.5"))
    assert stops.level == D(97)
    with pytest.raises(AtrUnknown):
        StopTracker.open("long", D(100), config(stop_loss="atr", stop_atr_multiple="2"), None)


def test_the_trail_ratchets_with_the_best_price_and_never_loosens():
    stops = StopTracker.open(
        "long", D(100), config(stop_loss="distance", stop_distance="5", trailing="distance", trail_distance="3"), None
    )
    assert stops.level == D(97)  # the trail (100 - 3) is tighter than the stop-loss (95)
    levels = []
    for bid in ("101", "104", "102", "103", "101.5", "104.5"):
        assert stops.on_price(D(bid), D(bid) + D("0.1")) is None
        levels.append(stops.level)
    assert levels == [D(98), D(101), D(101), D(101), D(101), D("101.5")]
    assert all(b >= a for a, b in itertools.pairwise(levels))  # monotone: never loosens
    hit = stops.on_price(D("101.5"), D("101.6"))
    assert hit is not None and hit.kind == "trailing_stop" and hit.level == D("101.5")


def test_a_short_trail_follows_the_lowest_ask():
    stops = StopTracker.open("short", D(100), config(trailing="atr", trail_atr_multiple="2"), D(1))
    assert stops.level == D(102)
    assert stops.on_price(D("96.9"), D(97)) is None
    assert stops.level == D(99)
    assert stops.on_price(D("98.9"), D(98)) is None and stops.level == D(99)  # an ask up does not loosen it
    assert stops.on_price(D("98.9"), D("99")).kind == "trailing_stop"


def test_without_stops_nothing_triggers():
    stops = StopTracker.open("long", D(100), config(), None)
    assert stops.level is None and stops.on_price(D(1), D(2)) is None


def test_the_json_round_trip_resumes_the_same_trail():
    stops = StopTracker.open("long", D(100), config(trailing="distance", trail_distance="3"), None)
    stops.on_price(D(110), D("110.1"))
    again = StopTracker.from_json(stops.to_json())
    assert again == stops and again.level == D(107)
