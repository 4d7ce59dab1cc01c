"""Position sizing against hand-computed cases (shared.instruments' contract sizes and steps)."""

from __future__ import annotations

from decimal import Decimal as D

from services.trading_engine.bots.sizing import fixed_fractional, to_volume, volatility_target
from shared.instruments import INSTRUMENTS

EURUSD, XAUUSD, BTCUSD = INSTRUMENTS["EURUSD"], INSTRUMENTS["XAUUSD"], INSTRUMENTS["BTCUSD"]


def test_fixed_fractional_risks_the_fraction_between_entry_and_stop():
    # 1% of 10,000 = 100 USD; 20 pips x 100,000 = 200 USD per lot -> 0.5 lots
    assert fixed_fractional(EURUSD, D(10_000), D("0.01"), D("1.10000"), D("1.09800")) == D("0.50")
    # a short's stop above the entry is the same distance
    assert fixed_fractional(EURUSD, D(10_000), D("0.01"), D("1.10000"), D("1.10200")) == D("0.50")
    # gold: 10 USD x 100 oz = 1,000 per lot; 1% of 25,000 = 250 -> 0.25 lots
    assert fixed_fractional(XAUUSD, D(25_000), D("0.01"), D("2000"), D("1990")) == D("0.25")


def test_fixed_fractional_rounds_down_to_the_step():
    # 100 / (0.0015 x 100,000 = 150) = 0.666.. -> 0.66, never 0.67 (more risk than asked)
    assert fixed_fractional(EURUSD, D(10_000), D("0.01"), D("1.10000"), D("1.09850")) == D("0.66")


def test_below_the_minimum_there_is_no_trade_and_above_the_maximum_it_is_clipped():
    # 1 USD of risk / 200 per lot = 0.005 lots < 0.01
    assert fixed_fractional(EURUSD, D(100), D("0.01"), D("1.10000"), D("1.09800")) is None
    # 20,000 USD / (100 USD x 1 BTC) = 200 lots -> BTCUSD's maximum, 20
    assert fixed_fractional(BTCUSD, D(1_000_000), D("0.02"), D("50000"), D("49900")) == D("20.00")
    assert fixed_fractional(EURUSD, D(10_000), D("0.01"), D("1.1"), D("1.1")) is None  # no distance, no size


def test_volatility_targeting_with_a_daily_atr_or_a_realised_volatility():
    # 1% of 10,000 = 100 USD a day; daily ATR 80 pips = 800 USD per lot -> 0.125 -> 0.12
    assert volatility_target(EURUSD, D(10_000), D("0.01"), D("1.2"), daily_atr=D("0.0080")) == D("0.12")
    # realised 0.5% a day at 1.2 = 0.006 = 600 USD per lot -> 0.1666.. -> 0.16
    assert volatility_target(EURUSD, D(10_000), D("0.01"), D("1.2"), daily_volatility=D("0.005")) == D("0.16")
    # the ATR wins when both are given
    assert volatility_target(
        EURUSD, D(10_000), D("0.01"), D("1.2"), daily_atr=D("0.0080"), daily_volatility=D("0.005")
    ) == D("0.12")
    assert volatility_target(EURUSD, D(10_000), D("0.01"), D("1.2")) is None  # nothing to size from
    # BTC: 2% of 50,000 = 1,000 USD; daily ATR 2,500 USD per BTC -> 0.4
    assert volatility_target(BTCUSD, D(50_000), D("0.02"), D("60000"), daily_atr=D("2500")) == D("0.40")


def test_to_volume():
    assert to_volume(EURUSD, D("0.019999")) == D("0.01")
    assert to_volume(EURUSD, D("0.0099")) is None
    assert to_volume(EURUSD, D("9999")) == D("500.00")
