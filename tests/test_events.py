"""The event contract: deterministic ids, and the fast tick encoder held to the model byte for byte."""

from __future__ import annotations

import random
import uuid
from decimal import Decimal

from shared.events import (
    EVENT_NAMESPACE,
    MarketTick,
    decode_event,
    encode_event,
    encode_tick,
    tick_event_id,
    tick_event_id_text,
    uuid5_text,
)

AWKWARD_DECIMALS = ["1.10006", "1.1000", "100", "1E+2", "0.00000001", "1E-8", "65432.1", "0.5000000000", "12345678.9"]
AWKWARD_SOURCES = ["mt5", "client", "quote'\"\\", "ünïcødé-源", "tab\tnew\nline\x01"]


def _ticks(count: int):
    rng = random.Random(7)
    for i in range(count):
        bid = Decimal(rng.choice(AWKWARD_DECIMALS))
        ask = bid + Decimal(rng.choice(["0", "0.00001", "1E-5", "0.5"]))
        last = None if i % 3 == 0 else Decimal(rng.choice(AWKWARD_DECIMALS))
        yield {
            "event_id": uuid.UUID(int=rng.getrandbits(128)),
            "ts_event": rng.randrange(0, 2**62),
            "ts_init": rng.randrange(0, 2**62),
            "symbol": rng.choice(["EURUSD", "XAUUSD", "BTC.X", "US#30"]),
            "bid": bid,
            "ask": ask,
            "last": last,
            "volume": Decimal(rng.choice(["0", "1.5", "1E+3"])),
            "flags": rng.randrange(0, 1 << 16),
            "source": rng.choice(AWKWARD_SOURCES),
        }


def test_encode_tick_is_byte_for_byte_the_models_json():
    for fields in _ticks(2000):
        assert encode_tick(**fields) == encode_event(MarketTick(**fields)), fields


def test_encode_tick_takes_the_id_as_text_too():
    for fields in _ticks(50):
        assert encode_tick(**{**fields, "event_id": str(fields["event_id"])}) == encode_tick(**fields)


def test_uuid5_text_is_the_standard_uuid5():
    rng = random.Random(3)
    names = ["", "tick|EURUSD|1|1.1|1.2||0|6", "ünïcødé-源"] + [
        "".join(chr(rng.randrange(32, 0x3000)) for _ in range(rng.randrange(0, 80))) for _ in range(3000)
    ]
    for name in names:
        assert uuid5_text(name) == str(uuid.uuid5(EVENT_NAMESPACE, name)), name


def test_tick_id_text_is_the_tick_id():
    for fields in _ticks(200):
        args = (
            fields["symbol"],
            fields["ts_event"] // 1_000_000,
            fields["bid"],
            fields["ask"],
            fields["last"],
            fields["volume"],
            fields["flags"],
        )
        assert tick_event_id_text(*args) == str(tick_event_id(*args))


def test_an_encoded_tick_decodes_to_the_same_event():
    fields = next(_ticks(1))
    assert decode_event(MarketTick, encode_tick(**fields)) == MarketTick(**fields)


def test_tick_ids_ignore_trailing_zeros_but_not_values():
    base = tick_event_id("EURUSD", 1, Decimal("1.1"), Decimal("1.2"), None, Decimal(0), 6)
    assert tick_event_id("EURUSD", 1, Decimal("1.10"), Decimal("1.200"), None, Decimal("0.0"), 6) == base
    assert tick_event_id("EURUSD", 1, Decimal("1.1"), Decimal("1.2"), None, Decimal(0), 2) != base
    assert tick_event_id("EURUSD", 2, Decimal("1.1"), Decimal("1.2"), None, Decimal(0), 6) != base


def _vector(**features):
    from shared.events import FeatureVector, Timeframe, feature_vector_id

    open_ns = 1_700_000_040_000_000_000
    return FeatureVector(
        event_id=feature_vector_id("EURUSD", Timeframe.M1, open_ns, "core-1"),
        ts_event=open_ns,
        ts_init=open_ns,
        symbol="EURUSD",
        timeframe=Timeframe.M1,
        bar_event_id=uuid.uuid4(),
        feature_set="core-1",
        features=features,
    )


def test_a_feature_vector_keeps_its_order_and_missing_values_and_refuses_non_finite_ones():
    import pytest
    from pydantic import ValidationError

    from shared.events import FeatureVector

    vector = _vector(sma_20=1.1, rsi_14=None, macd=-0.5)
    again = decode_event(FeatureVector, encode_event(vector))
    assert list(again.features) == ["sma_20", "rsi_14", "macd"] and again.features["rsi_14"] is None
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValidationError):
            _vector(rsi_14=bad)
    with pytest.raises(ValidationError):
        _vector(**{"RSI 14": 1.0})  # names are lower-case identifiers


def test_intelligence_ids_are_deterministic_and_distinct():
    from shared.events import Timeframe, feature_vector_id, prediction_id, signal_id

    vector = feature_vector_id("EURUSD", Timeframe.M1, 60, "core-1")
    assert vector == feature_vector_id("EURUSD", Timeframe.M1, 60, "core-1")
    assert vector != feature_vector_id("EURUSD", Timeframe.M5, 60, "core-1")
    model = uuid.uuid4()
    assert prediction_id(model, vector) == prediction_id(model, vector) != prediction_id(uuid.uuid4(), vector)
    assert signal_id("EURUSD", Timeframe.M1, 60, "ensemble-1") != signal_id("EURUSD", Timeframe.M1, 120, "ensemble-1")
