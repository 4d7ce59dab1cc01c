"""The derived codecs follow their model: every field, the model's values, the model's bytes.

A sample model with one of each supported annotation is held to pydantic with
hypothesis (the fast path accepts only what the model accepts, to the same values;
the encoder writes the model's JSON byte for byte); a model with one more field gets
it everywhere; anything the derivation cannot carry raises when it runs.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    computed_field,
    create_model,
    field_serializer,
    field_validator,
)

from shared.codecs import UnsupportedModel, derive, plain_decimal_pattern, python_pattern, wire_struct
from shared.events import MARKET_TICK, SYMBOL_PATTERN, MarketTick, Timeframe, encode_event
from tests.support import mutations_of


class Sample(BaseModel):
    """One of each annotation the derivation supports, with constraints of each kind."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ident: uuid.UUID
    kind: Literal["a", "b"]
    version: Literal[3] = 3
    count: Annotated[int, Field(ge=1, le=1000)]
    signed: Annotated[Decimal, Field(ge=-5, lt=100, max_digits=6, decimal_places=3)]
    fraction: Annotated[Decimal, Field(gt=0, max_digits=2, decimal_places=2)]
    free: Decimal = Decimal("1E+2")
    floor: Annotated[Decimal, Field(gt=Decimal("0.5"), decimal_places=2)] | None = None
    symbol: Annotated[str, Field(pattern=SYMBOL_PATTERN)] = "EURUSD"
    name: Annotated[str, Field(min_length=2, max_length=5, pattern=r"^[a-z]+(?:-[a-z]+)?$")]
    note: Annotated[str, Field(max_length=3)] | None = None
    on: bool = False
    frame: Timeframe = Timeframe.M1


SAMPLE = derive(Sample)
FIELDS = tuple(Sample.model_fields)

CANONICAL = {
    "ident": "c8c56186-2cd1-5840-aed6-952691d62c60",
    "kind": "a",
    "version": 3,
    "count": 5,
    "signed": "-1.5",
    "fraction": "0.25",
    "free": "12345678901234567890.5",
    "floor": "0.75",
    "symbol": "XAUUSD",
    "name": "ab-cd",
    "note": "x",
    "on": True,
    "frame": "M5",
}

decimal_texts = st.one_of(
    st.builds(
        lambda sign, i, f: sign + i + ("." + f if f is not None else ""),
        st.sampled_from(["", "", "-", "+"]),
        st.text("0123456789", max_size=8),
        st.none() | st.text("0123456789", max_size=5),
    ),
    st.sampled_from(["1e2", "1E-8", "NaN", "-0", "-0.0", "0", "0.0", "0.5", "0.50", "100", "99.999", "-5", "-5.001"]),
)
decimals = st.one_of(decimal_texts, st.floats(), st.integers(-10, 10**6), st.none(), st.booleans())
integers = st.one_of(st.integers(-(2**65), 2**65), st.integers(-3, 1003), st.floats(), st.sampled_from([True, "1"]))
texts = st.one_of(st.text(max_size=7), st.text("abz-A\n", max_size=7), st.none(), st.integers())
VALUES: dict[str, Any] = {
    "ident": st.one_of(st.uuids().map(str), st.uuids().map(lambda u: u.hex.upper()), st.text(max_size=36)),
    "kind": st.sampled_from(["a", "b", "c", "", None, 1]),
    "version": st.sampled_from([3, 2, "3", 3.0, None]),
    "count": integers,
    "signed": decimals,
    "fraction": decimals,
    "free": decimals,
    "floor": decimals,
    "symbol": st.sampled_from(["EURUSD", "EURUSD\n", "eurusd", "E", "A" * 33, "US#30", 7]),
    "name": texts,
    "note": texts,
    "on": st.sampled_from([True, False, "true", 1, 0, None]),
    "frame": st.sampled_from(["M1", "H1", "m1", "D1", 1, None]),
}


def _same(fast: Any, model: BaseModel) -> None:
    for name in type(model).model_fields:
        # repr, not ==: Decimal("1.10") == Decimal("1.1"), but the exponent is kept downstream
        assert repr(getattr(fast, name)) == repr(getattr(model, name)), name


@settings(max_examples=3000, deadline=None)
@given(mutations_of(CANONICAL, VALUES, max_changes=4), st.booleans())
def test_the_fast_path_accepts_only_what_the_model_accepts_and_equally(fields, ascii_only):
    payload = json.dumps(fields, ensure_ascii=ascii_only).encode()
    fast = SAMPLE.decode(payload)
    if fast is None:
        return
    try:
        model = Sample.model_validate_json(payload)
    except ValidationError as exc:
        raise AssertionError(f"fast path accepted what the model refuses: {payload!r}") from exc
    _same(fast, model)


def test_the_canonical_form_takes_the_fast_path_and_a_refusal_goes_to_the_fallback():
    fast = SAMPLE.decode(json.dumps(CANONICAL).encode())
    assert isinstance(fast, SAMPLE.record)
    _same(fast, Sample.model_validate(CANONICAL))
    model_of = SAMPLE.decoder(Sample.model_validate_json)
    assert isinstance(model_of(json.dumps(CANONICAL).encode()), SAMPLE.record)
    # a zero fraction fits the pattern but not gt=0 (nor a 0.5 floor gt=0.5, a 100 lt=100): the model refuses;
    # a 2.0 count is not the canonical form, but the model takes it
    for changed, model_takes_it in (
        ({"fraction": "0.00"}, False),
        ({"floor": "0.5"}, False),
        ({"signed": "100"}, False),
        ({"count": 2.0}, True),
    ):
        payload = json.dumps({**CANONICAL, **changed}).encode()
        assert SAMPLE.decode(payload) is None, changed
        if model_takes_it:
            assert isinstance(model_of(payload), Sample)
        else:
            with pytest.raises(ValidationError):
                model_of(payload)


def test_defaults_are_the_models():
    payload = json.dumps({k: CANONICAL[k] for k in ("ident", "kind", "count", "signed", "fraction", "name")})
    fast = SAMPLE.decode(payload.encode())
    assert fast is not None
    _same(fast, Sample.model_validate_json(payload))


valid_values = {
    "ident": st.uuids(),
    "kind": st.sampled_from(["a", "b"]),
    "count": st.integers(1, 1000),
    "signed": st.decimals(min_value=-5, max_value=Decimal("99.999"), places=3),
    "fraction": st.decimals(min_value=Decimal("0.01"), max_value=Decimal("0.99"), places=2),
    "free": st.decimals(allow_nan=False, allow_infinity=False),
    "floor": st.none() | st.decimals(min_value=Decimal("0.51"), max_value=10**9, places=2),
    "symbol": st.from_regex(r"\A[A-Z0-9][A-Z0-9._#-]{1,31}\Z"),
    "name": st.from_regex(r"\A[a-z]{2,3}(?:-[a-z])?\Z"),
    "note": st.none() | st.text(max_size=3),
    "on": st.booleans(),
    "frame": st.sampled_from(Timeframe),
}


REQUIRED = [name for name, field in Sample.model_fields.items() if field.is_required()]


@settings(max_examples=1000, deadline=None)
@given(
    st.fixed_dictionaries(
        {k: v for k, v in valid_values.items() if k in REQUIRED},
        optional={k: v for k, v in valid_values.items() if k not in REQUIRED},
    )
)
def test_the_encoder_writes_the_models_json_and_the_decoder_reads_it_back(fields):
    try:
        model = Sample(**fields)
    except ValidationError:
        assume(False)
    payload = SAMPLE.encode(**fields)
    assert payload == model.model_dump_json().encode()
    fast = SAMPLE.decode(payload)
    if fast is not None:  # plain notation: read back to the same values, written again to the same bytes
        _same(fast, model)
        assert SAMPLE.encode_record(fast) == payload


@settings(max_examples=1000, deadline=None)
@given(
    source=st.text(max_size=64),
    bid=st.decimals(min_value=Decimal("1E-8"), max_value=Decimal("9999999999.99999999"), places=8),
    last=st.none() | st.decimals(min_value=0, max_value=Decimal("9999999999.99999999"), places=8),
    event_id=st.uuids(),
)
def test_the_tick_encoder_writes_the_models_json_for_any_text_and_decimal(source, bid, last, event_id):
    fields = {"event_id": event_id, "ts_event": 1, "ts_init": 2, "symbol": "EURUSD", "bid": bid, "ask": bid}
    fields |= {"last": last, "source": source}
    assert MARKET_TICK.encode(**fields) == encode_event(MarketTick(**fields))


def test_the_record_and_the_wire_have_the_models_fields_in_its_order():
    for codec in (SAMPLE, MARKET_TICK):
        names = tuple(codec.model.model_fields)
        assert codec.record.__struct_fields__ == names
        assert set(codec.wire.__struct_fields__) == set(names)


def test_a_field_added_to_the_model_is_in_the_wire_the_record_and_the_encoder():
    Plus = create_model(
        "Plus",
        __base__=Sample,
        venue=(Annotated[str, Field(max_length=8)], ...),
        spread=(Annotated[Decimal, Field(ge=0, max_digits=5, decimal_places=1)], Decimal("0.5")),
    )
    plus = derive(Plus)
    assert {"venue", "spread"} <= set(plus.wire.__struct_fields__)
    assert plus.record.__struct_fields__[-2:] == ("venue", "spread")
    base = {k: v for k, v in Sample.model_validate(CANONICAL) if k != "version"}
    model = Plus(**base, venue="xetra", spread=Decimal("1.5"))
    payload = plus.encode(**base, venue="xetra", spread=Decimal("1.5"))
    assert payload == model.model_dump_json().encode()
    _same(plus.decode(payload), model)
    # required by the model, so required by the wire: the old form goes to the model
    assert plus.decode(json.dumps(CANONICAL).encode()) is None
    with pytest.raises(TypeError, match="venue"):
        plus.encode(**base)
    # a value the new field's constraints refuse goes to the model too
    assert plus.decode(json.dumps({**CANONICAL, "venue": "x" * 9}).encode()) is None
    assert plus.decode(json.dumps({**CANONICAL, "venue": "x", "spread": "-0.5"}).encode()) is None


def _model(annotation: Any, default: Any = ..., **config: Any) -> type[BaseModel]:
    config_dict = ConfigDict(**config) if config else None  # type: ignore[typeddict-item]
    return create_model("Odd", __config__=config_dict, odd=(annotation, default))


class WithValidator(BaseModel):
    price: Decimal

    @field_validator("price")
    @classmethod
    def _round(cls, v: Decimal) -> Decimal:
        return round(v, 2)


class WithSerializer(BaseModel):
    price: Decimal

    @field_serializer("price")
    def _as_float(self, v: Decimal) -> float:
        return float(v)


class WithComputed(BaseModel):
    price: Decimal

    @computed_field  # type: ignore[prop-decorator]
    @property
    def double(self) -> Decimal:
        return self.price * 2


class Inner(BaseModel):
    x: int


UNSUPPORTED = {
    "float": _model(float),
    "list": _model(list[int]),
    "dict": _model(dict[str, str]),
    "nested model": _model(Inner),
    "union": _model(int | str),
    "optional union": _model(int | str | None, None),
    "alias": create_model("Odd", odd=(int, Field(alias="Odd"))),
    "serialization alias": create_model("Odd", odd=(int, Field(serialization_alias="o"))),
    "excluded": create_model("Odd", odd=(int, Field(0, exclude=True))),
    "default factory": create_model("Odd", odd=(int, Field(default_factory=int))),
    "mutable default": _model(str | None, ["x"]),
    "multiple_of decimal": _model(Annotated[Decimal, Field(multiple_of=Decimal("0.5"))]),  # type: ignore[call-overload]
    "float bound": _model(Annotated[Decimal, Field(gt=0.5)]),
    "max_digits alone": _model(Annotated[Decimal, Field(max_digits=5)]),
    "strict": _model(Annotated[int, Strict()]),
    "after validator": _model(Annotated[int, AfterValidator(abs)]),
    "bounds on a str": _model(Annotated[str, Field(gt="a")]),
    "length of an int": _model(Annotated[int, Field(max_length=3)]),
    "constraint on the whole optional": _model(Annotated[int | None, Field(ge=0)], None),
    "pattern with \\w": _model(Annotated[str, Field(pattern=r"^\w+$")]),
    "pattern with inline flags": _model(Annotated[str, Field(pattern=r"(?i)^a+$")]),
    "pattern with \\p": _model(Annotated[str, Field(pattern=r"^\p{Lu}+$")]),
    "strip whitespace": _model(str, str_strip_whitespace=True),
    "enum values": _model(Timeframe, use_enum_values=True),
    "bool literal": _model(Literal[True]),
    "keyword name": create_model("Odd", **{"from": (int, ...)}),  # type: ignore[call-overload]
    "field validator": WithValidator,
    "field serializer": WithSerializer,
    "computed field": WithComputed,
}


@pytest.mark.parametrize("model", UNSUPPORTED.values(), ids=UNSUPPORTED.keys())
def test_what_the_derivation_cannot_carry_raises_when_it_runs(model):
    with pytest.raises(UnsupportedModel, match=f"^{model.__name__}[.:]"):  # names what it refuses
        derive(model)


def test_an_override_stands_for_a_looser_field_and_the_others_are_still_derived():
    class Envelope(BaseModel):
        source: Annotated[str, Field(min_length=1, max_length=4)] = "c"
        items: list[dict[str, Any]]

    with pytest.raises(UnsupportedModel, match="items"):
        wire_struct(Envelope)
    wire = wire_struct(Envelope, overrides={"items": list[SAMPLE.wire]})
    decode = msgspec.json.Decoder(wire).decode
    assert decode(json.dumps({"items": [CANONICAL]}).encode()).source == "c"
    with pytest.raises(msgspec.ValidationError):
        decode(json.dumps({"source": "", "items": []}).encode())
    with pytest.raises(UnsupportedModel, match="nope"):
        wire_struct(Envelope, overrides={"nope": int})


def test_plain_decimal_patterns():
    # MarketTick's Price and Quantity: what tick_decoder.PlainDecimal was by hand
    assert plain_decimal_pattern(signed=False, max_digits=28, decimal_places=10) == (
        r"^(?:0|[1-9][0-9]{0,17})(?:\.[0-9]{1,10})?\Z"
    )
    assert plain_decimal_pattern(signed=True, max_digits=None, decimal_places=None) == (
        r"^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?\Z"
    )
    assert plain_decimal_pattern(signed=False, max_digits=2, decimal_places=2) == r"^0\.[0-9]{1,2}\Z"
    assert plain_decimal_pattern(signed=False, max_digits=3, decimal_places=0) == r"^(?:0|[1-9][0-9]{0,2})\Z"


def test_python_pattern_anchors_the_end_as_rust_does():
    assert python_pattern(SYMBOL_PATTERN) == r"^[A-Z0-9][A-Z0-9._#-]{1,31}\Z"
    assert python_pattern(r"^a$|^[$]\$$") == r"^a\Z|^[$]\$\Z"
    assert python_pattern(r"^a$", "python-re") == r"^a$"
