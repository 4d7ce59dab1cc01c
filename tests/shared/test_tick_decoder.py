"""The fast tick decoder never disagrees with the ``MarketTick`` model, and takes the canonical form itself."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.events import EventDecodeError, MarketTick, encode_event, encode_tick
from shared.tick_decoder import TickRecord, decode_tick
from tests.support import mutations_of

FIELDS = tuple(MarketTick.model_fields)

CANONICAL = {
    "event_id": "c8c56186-2cd1-5840-aed6-952691d62c60",
    "ts_event": 1_767_225_600_138_000_000,
    "ts_init": 1_767_225_600_140_000_000,
    "event_type": "market.tick",
    "schema_version": 1,
    "symbol": "EURUSD",
    "bid": "1.10016",
    "ask": "1.10017",
    "last": None,
    "volume": "0",
    "flags": 6,
    "source": "mt5",
}

digits = st.text("0123456789", min_size=0, max_size=22)
decimal_texts = st.one_of(
    st.builds(lambda i, f: i + ("." + f if f is not None else ""), digits, st.none() | digits),
    st.builds(lambda a, b: a + b, st.sampled_from(["", "-", "+", " ", "0", "00"]), digits),
    st.sampled_from(
        [
            "1e5",
            "1E-8",
            "NaN",
            "Infinity",
            "-0",
            "0.0000000000",
            "1_000",
            " 1.5",
            "1.5 ",
            "1.5\n",
            "0x10",
            "",
            ".5",
            "5.",
            "1.10016",
            "0.00000000001",
            "9" * 18 + ".1",
            "9" * 19,
        ]
    ),
)
#: Valid plain decimals of every size the model allows: what the fast path must take itself.
plain_decimals = st.decimals(min_value=0, max_value=Decimal("9999999999.99999999"), places=8).map(lambda d: f"{d:f}")
decimal_values = st.one_of(
    decimal_texts, plain_decimals, st.floats(allow_nan=True), st.integers(-10, 10**20), st.none(), st.booleans()
)
symbols = st.one_of(
    st.sampled_from(["EURUSD", "XAUUSD", "BTC.X", "US#30", "EURUSD\n", "eurusd", "E", "A" * 33]),
    st.text("ABCXYZ019._#-\n a", min_size=0, max_size=34),
)
integers = st.one_of(st.integers(-(2**65), 2**65), st.floats(allow_nan=False), st.sampled_from([0, 1, True, "1"]))
ids = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: u.hex),
    st.uuids().map(lambda u: str(u).upper()),
    st.uuids().map(lambda u: f"urn:uuid:{u}"),
    st.uuids().map(lambda u: "{" + str(u) + "}"),
    st.text(max_size=40),
)
texts = st.text(max_size=70)
VALUES = {
    "event_id": ids,
    "ts_event": integers,
    "ts_init": integers,
    "event_type": st.sampled_from(["market.tick", "market.bar", ""]),
    "schema_version": st.sampled_from([1, 2, 1.0, "1"]),
    "symbol": symbols,
    "bid": decimal_values,
    "ask": decimal_values,
    "last": decimal_values,
    "volume": decimal_values,
    "flags": integers,
    "source": texts,
}


#: Values the fast path takes itself: canonical ticks of every shape, not only the one above.
CANONICAL_VALUES = {
    **{name: st.just(value) for name, value in CANONICAL.items()},
    "event_id": st.uuids().map(str),
    "ts_event": st.integers(0, 2**63 - 1),
    "ts_init": st.integers(0, 2**63 - 1),
    "symbol": st.from_regex(r"[A-Z0-9][A-Z0-9._#-]{1,31}", fullmatch=True),
    "bid": plain_decimals.filter(lambda d: Decimal(d) > 0),
    "ask": plain_decimals.filter(lambda d: Decimal(d) > 0),
    "last": st.none() | plain_decimals,
    "volume": plain_decimals,
    "flags": st.integers(-(2**63), 2**63 - 1),
    "source": st.text(max_size=64),
}


@st.composite
def payloads(draw) -> bytes:
    # Half of them canonical in every field, half mostly canonical with a few wild values.
    if draw(st.booleans()):
        event = draw(st.fixed_dictionaries(CANONICAL_VALUES))
    else:
        event = draw(mutations_of(CANONICAL, VALUES, max_changes=4))
    # the standard library's encoder: any int, NaN, and \u escapes or raw UTF-8
    return json.dumps(event, ensure_ascii=draw(st.booleans())).encode()


def _same(fast, model: MarketTick) -> None:
    for name in FIELDS:
        # repr, not ==: Decimal("1.10") == Decimal("1.1"), but the exponent is kept downstream
        assert repr(getattr(fast, name)) == repr(getattr(model, name)), name


#: Of the examples the fast path must have decided itself (a ``TickRecord``, not the model's
#: fallback), at least this many: otherwise the test mostly compares the model with itself.
MIN_FAST_EXAMPLES = 1000


def test_the_fast_path_accepts_only_what_the_model_accepts_and_equally():
    taken = {"fast": 0, "fallback": 0, "refused": 0}

    @settings(max_examples=3000, deadline=None, database=None, derandomize=True)
    @given(payloads())
    def check(payload: bytes) -> None:
        try:
            model = MarketTick.model_validate_json(payload)
        except ValueError:
            model = None
        try:
            decoded = decode_tick(payload)
        except EventDecodeError:
            assert model is None
            taken["refused"] += 1
            return
        assert model is not None, payload
        if isinstance(decoded, MarketTick):  # the fast path declined; the model decided
            taken["fallback"] += 1
            return
        taken["fast"] += 1
        _same(decoded, model)

    check()
    assert taken["fast"] >= MIN_FAST_EXAMPLES, taken


def _plain(value: Decimal) -> bool:
    return "E" not in str(value)


@settings(max_examples=500, deadline=None)
@given(
    bid=st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("99999999"), places=8).filter(_plain),
    volume=st.decimals(min_value=0, max_value=Decimal("1000000"), places=4).filter(_plain),
    last=st.none() | st.decimals(min_value=0, max_value=Decimal("99999999"), places=5).filter(_plain),
    source=st.text(max_size=64),
    event_id=st.uuids(),
    ts=st.integers(0, 2**62),
    flags=st.integers(-(2**31), 2**31),
)
def test_what_the_encoders_write_in_plain_notation_takes_the_fast_path(bid, volume, last, source, event_id, ts, flags):
    fields = {
        "event_id": event_id,
        "ts_event": ts,
        "ts_init": ts,
        "symbol": "XAUUSD",
        "bid": bid,
        "ask": bid,
        "last": last,
        "volume": volume,
        "flags": flags,
        "source": source,
    }
    payload = encode_tick(**fields)
    assert payload == encode_event(MarketTick(**fields))
    fast = decode_tick(payload)
    assert isinstance(fast, TickRecord)
    _same(fast, MarketTick(**fields))


def test_an_invalid_tick_gets_the_models_reason():
    with pytest.raises(EventDecodeError, match="bid"):
        decode_tick(orjson.dumps({**CANONICAL, "bid": "0"}))
    with pytest.raises(EventDecodeError, match="symbol"):
        decode_tick(orjson.dumps({**CANONICAL, "symbol": "EURUSD\n"}))


def test_a_tick_in_another_valid_form_still_decodes_through_the_model():
    tick = decode_tick(orjson.dumps({**CANONICAL, "bid": 1.5, "event_id": uuid.UUID(CANONICAL["event_id"]).hex}))
    assert isinstance(tick, MarketTick) and tick.bid == Decimal("1.5")
    # str(Decimal) writes values below 1e-6 with an exponent: valid, through the model
    tick = decode_tick(orjson.dumps({**CANONICAL, "bid": "1E-8", "ask": "2E-8"}))
    assert isinstance(tick, MarketTick) and repr(tick.bid) == "Decimal('1E-8')"
