"""The ingest body's fast path reads only what the models accept, to the same ticks."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.data_bridge.ingest_body import IngestTick, Malformed, PlainTick, decode_batch, decode_plain_batch
from shared.kit.problems import Problem
from tests.support import mutations_of

LIMIT = 50
TICK_FIELDS = tuple(IngestTick.model_fields)
CANONICAL = {
    "symbol": "EURUSD",
    "time_msc": 1_767_225_600_138,
    "bid": "1.10016",
    "ask": "1.10017",
    "last": None,
    "volume": "0",
    "flags": 6,
}

decimals = st.one_of(
    st.builds(
        lambda i, f: i + ("." + f if f is not None else ""),
        st.text("0123456789", max_size=20),
        st.none() | st.text("0123456789", max_size=12),
    ),
    st.sampled_from(["1e5", "NaN", "-1", "+1", " 1", "01.5", "0", "0.0", "1.5\n", "1_0"]),
    st.floats(),
    st.integers(-5, 10**20),
    st.none(),
    st.booleans(),
)
VALUES = {
    "symbol": st.text("ABZ09._#-\n a", max_size=34),
    "time_msc": st.integers(-(2**65), 2**65) | st.floats(),
    "bid": decimals,
    "ask": decimals,
    "last": decimals,
    "volume": decimals,
    "flags": st.integers(-(2**65), 2**65) | st.sampled_from([1.0, "1", True]),
}


plain_decimals = st.decimals(min_value=0, max_value=Decimal("9999999999.99999999"), places=8).map(lambda d: f"{d:f}")
#: Values the fast path takes itself: canonical ticks of every shape, not only the one above.
CANONICAL_VALUES = {
    "symbol": st.from_regex(r"[A-Z0-9][A-Z0-9._#-]{1,31}", fullmatch=True),
    "time_msc": st.integers(0, 2**63 - 1),
    "bid": plain_decimals.filter(lambda d: Decimal(d) > 0),
    "ask": plain_decimals.filter(lambda d: Decimal(d) > 0),
    "last": st.none() | plain_decimals,
    "volume": plain_decimals,
    "flags": st.integers(0, 2**63 - 1),
}


@st.composite
def bodies(draw) -> bytes:
    # Half of the batches canonical in every tick, half with a few wild values in some.
    if draw(st.booleans()):
        ticks = st.lists(st.fixed_dictionaries(CANONICAL_VALUES), max_size=4)
    else:
        ticks = st.lists(mutations_of(CANONICAL, VALUES, max_changes=3), max_size=4)
    batch: dict = {"ticks": draw(ticks)}
    if draw(st.booleans()):
        batch["source"] = draw(st.text(max_size=70) | st.integers())
    return json.dumps(batch, ensure_ascii=draw(st.booleans())).encode()


def _model_view(body: bytes):
    try:
        return decode_batch(body, LIMIT)
    except Problem:
        return None


#: Of the examples, at least this many with ticks that the fast path read itself: otherwise the
#: test mostly returns early, having compared nothing.
MIN_FAST_EXAMPLES = 400  # seen: 568-700 of 2,000; the old generators gave 69


def test_the_fast_path_agrees_with_the_models():
    fast_examples = 0

    @settings(max_examples=2000, deadline=None, database=None, derandomize=True)
    @given(bodies())
    def check(body: bytes) -> None:
        nonlocal fast_examples
        fast = decode_plain_batch(body, LIMIT)
        if fast is None:
            return
        source, plain = fast
        model = _model_view(body)
        assert model is not None, body
        assert source == model[0]
        assert len(plain) == len(model[1])
        for ours, theirs in zip(plain, model[1], strict=True):
            assert isinstance(ours, PlainTick) and isinstance(theirs, IngestTick), (body, theirs)
            for name in (*TICK_FIELDS, "ts_event"):
                assert repr(getattr(ours, name)) == repr(getattr(theirs, name)), name
        fast_examples += bool(plain)

    check()
    assert fast_examples >= MIN_FAST_EXAMPLES


def test_what_the_client_tier_sends_takes_the_fast_path():
    body = json.dumps(
        {
            "source": "mt5",
            "ticks": [
                CANONICAL,
                {**CANONICAL, "last": "1.1", "volume": "2.5"},
                {"symbol": "XAUUSD", "time_msc": 1, "bid": "2000", "ask": "2000.5"},
            ],
        }
    )
    source, plain = decode_plain_batch(body.encode(), LIMIT)
    assert source == "mt5" and [t.symbol for t in plain] == ["EURUSD", "EURUSD", "XAUUSD"]


def test_one_bad_tick_sends_the_batch_to_the_models_with_a_reason_for_it():
    body = json.dumps({"ticks": [CANONICAL, {**CANONICAL, "bid": "0"}, {**CANONICAL, "flags": -1}]}).encode()
    assert decode_plain_batch(body, LIMIT) is None
    source, items = decode_batch(body, LIMIT)
    assert source == "client" and isinstance(items[0], IngestTick)
    assert [(m.index, m.detail.split(":")[0]) for m in items[1:]] == [(1, "bid"), (2, "flags")]
    assert all(isinstance(m, Malformed) for m in items[1:])


@pytest.mark.parametrize("decode", [decode_plain_batch, decode_batch])
def test_too_many_ticks_is_413_either_way(decode):
    with pytest.raises(Problem) as caught:
        decode(json.dumps({"ticks": [CANONICAL] * (LIMIT + 1)}).encode(), LIMIT)
    assert caught.value.status == 413


@pytest.mark.parametrize(
    "field, value, detail",
    [
        (
            "volume",
            "12345678901.5",
            "volume: Decimal input should have no more than 10 digits before the decimal point",
        ),
        ("bid", "1.123456789", "bid: Decimal input should have no more than 8 decimal places"),
    ],
)
def test_a_tick_the_store_cannot_hold_is_refused_with_its_reason_either_way(field, value, detail):
    body = json.dumps({"ticks": [CANONICAL, {**CANONICAL, field: value}]}).encode()
    assert decode_plain_batch(body, LIMIT) is None
    _, items = decode_batch(body, LIMIT)
    assert isinstance(items[0], IngestTick)
    assert items[1] == Malformed(index=1, detail=detail)
