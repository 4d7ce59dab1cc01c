"""Fast codecs derived from a pydantic model, so a model and its msgspec codec cannot drift apart.

``derive(Model)`` reads the model's fields (names, order, annotations, constraints,
defaults) and builds:

* ``wire``: a msgspec ``Struct`` of the model's canonical JSON, what ``model_dump_json``
  writes. It is *stricter* than the model, never looser: decimals only as plain JSON
  strings (``"1.10016"``: no exponent, no leading zero, a sign only if the model allows
  negatives, at most ``max_digits - decimal_places`` integer and ``decimal_places``
  fraction digits), integers only as JSON integers of 64 bits, no unknown field;
* ``record``: the decoded values (``Decimal``, ``UUID``, ...) in a frozen, ``gc=False``
  ``Struct`` with the model's fields in the model's order, for hot consumers that would
  otherwise build a pydantic model per message;
* ``from_wire``/``from_wires``/``decode``: wire -> record, running the checks a pattern
  cannot express (``Price``'s ``gt=0``, any other bound of a decimal); each answers
  ``None`` for what it refuses, and ``decoder(fallback)`` gives a decode function that
  hands the payload to ``fallback`` instead (the model, which decides and gives the reason);
* ``encode(**fields)``: exactly ``model.model_dump_json().encode()`` for valid values,
  without building the model (msgspec writes ``Decimal`` and ``UUID`` as pydantic does;
  a ``UUID`` may also be given as its canonical text); ``encode_record(record)`` likewise.

Anything the derivation does not understand (a float, a nested model, a validator, an
alias, an unknown constraint, a config option that changes values, ...) raises
``UnsupportedModel`` when ``derive`` runs, at import: a field is never silently left out
of a codec. The converters and the encoder are generated code (``Codec.source``), so the
derived codec costs what a hand-written one did.
"""

from __future__ import annotations

import enum
import keyword
import types
import typing
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import annotated_types
import msgspec
from pydantic import BaseModel, RootModel
from pydantic.fields import FieldInfo
from pydantic.types import AllowInfNan
from pydantic_core import PydanticUndefined

from shared import compat

__all__ = ["Codec", "UnsupportedModel", "derive", "plain_decimal_pattern", "python_pattern", "wire_struct"]


class UnsupportedModel(TypeError):
    """The model has something the derivation cannot carry into a codec faithfully."""


#: Config keys that do not change what a model accepts, its values or its JSON.
_HARMLESS_CONFIG = {"frozen", "extra", "title", "json_schema_extra", "regex_engine", "defer_build"}
#: Defaults the wire reads as they are (immutable, and written by JSON as by the model).
_PLAIN_DEFAULTS = (str, int, bool, uuid.UUID)
#: Field attributes that would make the JSON differ from the field names and values.
_FIELD_REFUSALS = ("alias", "validation_alias", "serialization_alias", "exclude", "exclude_if", "discriminator")


def plain_decimal_pattern(*, signed: bool, max_digits: int | None, decimal_places: int | None) -> str:
    """A Python ``re`` pattern of the decimals written plainly that fit ``max_digits``/``decimal_places``.

    ``max_digits=28, decimal_places=10`` unsigned: ``^(?:0|[1-9][0-9]{0,17})(?:\\.[0-9]{1,10})?\\Z``.
    """
    if max_digits is not None and decimal_places is None:
        raise UnsupportedModel("a Decimal with max_digits needs decimal_places too")
    whole = None if max_digits is None or decimal_places is None else max_digits - decimal_places
    if (whole is not None and whole < 0) or (decimal_places is not None and decimal_places < 0):
        raise UnsupportedModel(f"max_digits={max_digits}, decimal_places={decimal_places}")
    fraction = "[0-9]+" if decimal_places is None else f"[0-9]{{1,{decimal_places}}}"
    if whole == 0:  # only "0.x" (pydantic counts the "0" of a bare "0" as a whole digit)
        if decimal_places == 0:
            raise UnsupportedModel("a Decimal with max_digits=0")
        body = rf"0\.{fraction}"
    else:
        integer = "(?:0|[1-9][0-9]*)" if whole is None else f"(?:0|[1-9][0-9]{{0,{whole - 1}}})"
        body = integer if decimal_places == 0 else rf"{integer}(?:\.{fraction})?"
    return rf"^{'-?' if signed else ''}{body}\Z"


_PYTHON_SAFE_ESCAPES = set(r".-+*?()[]{}|^$\/#&~ ") | {"d"}


def python_pattern(pattern: str, engine: str = "rust-regex") -> str:
    """``pattern`` for Python's ``re`` (msgspec's), meaning what it means to the model's engine.

    pydantic's default engine is Rust's ``regex``, where ``$`` matches only at the end
    (Python's ``$`` also before a final newline): it becomes ``\\Z``. Only a plain subset
    is carried over (literals, classes, groups, quantifiers, ``\\d`` and escaped
    punctuation); anything else raises rather than risk a different meaning.
    """
    if engine == "python-re":
        return pattern
    out: list[str] = []
    in_class = escaped = False
    for i, ch in enumerate(pattern):
        if escaped:
            if ch not in _PYTHON_SAFE_ESCAPES:
                raise UnsupportedModel(f"pattern {pattern!r}: escape \\{ch} is not carried over to Python's re")
            out.append(ch)
            escaped = False
        elif ch == "\\":
            out.append(ch)
            escaped = True
        elif in_class:
            out.append(ch)
            in_class = ch != "]" or out[-2] == "["
        elif ch == "[":
            out.append(ch)
            in_class = True
        elif ch == "$":
            out.append(r"\Z")
        elif ch == "(" and pattern.startswith("(?", i) and not pattern.startswith("(?:", i):
            raise UnsupportedModel(f"pattern {pattern!r}: only (?: groups are carried over to Python's re")
        else:
            out.append(ch)
    return "".join(out)


@dataclass(frozen=True)
class _Field:
    """One field, as the generated code needs it."""

    name: str
    wire: Any  # msgspec annotation of the canonical JSON
    record: Any  # annotation of the decoded value
    default: Any  # the model's default, or PydanticUndefined
    wire_default: Any  # the default as the wire reads it, or msgspec.NODEFAULT
    convert: str | None  # expression turning wire value ``{v}`` into the record value
    checks: tuple[str, ...]  # conditions on the record value ``{v}`` that must hold
    optional: bool  # ``X | None``: ``convert`` and ``checks`` apply when not None


@dataclass(frozen=True)
class _Leaf:
    wire: Any
    record: Any
    convert: str | None = None
    checks: tuple[str, ...] = ()


def _constraints(where: str, metadata: list[Any]) -> dict[str, Any]:
    """The constraints in ``metadata`` by name; raise on anything that is not a known constraint."""
    out: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, annotated_types.Gt | annotated_types.Ge | annotated_types.Lt | annotated_types.Le):
            name = type(item).__name__.lower()
            out[name] = getattr(item, name)
        elif isinstance(item, annotated_types.MinLen):
            out["min_length"] = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            out["max_length"] = item.max_length
        elif isinstance(item, annotated_types.MultipleOf):
            out["multiple_of"] = item.multiple_of
        elif isinstance(item, AllowInfNan):
            out["allow_inf_nan"] = item.allow_inf_nan
        elif compat.is_pydantic_general_metadata(item):
            out.update(vars(item))
        else:
            raise UnsupportedModel(f"{where}: {item!r} is not a constraint the codec derivation knows")
    return out


def _only(where: str, kind: str, constraints: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(constraints) - allowed)
    if extra:
        raise UnsupportedModel(f"{where}: {kind} with {', '.join(extra)} is not supported by the codec derivation")


class _Constants:
    """Values the generated code refers to by name (one name per object)."""

    def __init__(self) -> None:
        self.names: dict[str, Any] = {}

    def add(self, value: Any, hint: str) -> str:
        for name, known in self.names.items():
            if known is value:
                return name
        name = f"_{hint}"
        while name in self.names:
            name += "_"
        self.names[name] = value
        return name


def _leaf(where: str, annotation: Any, metadata: list[Any], consts: _Constants, engine: str) -> _Leaf:
    """Wire and record types of one non-union annotation with its constraints."""
    c = _constraints(where, metadata)
    if annotation is Decimal:
        _only(where, "Decimal", c, {"gt", "ge", "lt", "le", "max_digits", "decimal_places", "allow_inf_nan"})
        for bound in ("gt", "ge", "lt", "le"):
            if (bound in c and not isinstance(c[bound], int | Decimal)) or isinstance(c.get(bound), bool):
                raise UnsupportedModel(f"{where}: a Decimal bound must be an int or a Decimal, not {c[bound]!r}")
        ge, gt = c.get("ge"), c.get("gt")
        unsigned = (ge is not None and ge >= 0) or (gt is not None and gt >= 0)
        try:
            pattern = plain_decimal_pattern(
                signed=not unsigned, max_digits=c.get("max_digits"), decimal_places=c.get("decimal_places")
            )
        except UnsupportedModel as exc:
            raise UnsupportedModel(f"{where}: {exc}") from None
        checks = []
        if gt is not None:  # the pattern cannot say "not zero" (or any other bound) plainly
            checks.append("{v}" if gt == 0 and unsigned else f"{{v}} > {consts.add(gt, 'bound')}")
        if ge is not None and not (ge == 0 and unsigned):
            checks.append(f"{{v}} >= {consts.add(ge, 'bound')}")
        for bound, op in (("lt", "<"), ("le", "<=")):
            if bound in c:
                checks.append(f"{{v}} {op} {consts.add(c[bound], 'bound')}")
        wire = typing.Annotated[str, msgspec.Meta(pattern=pattern)]
        return _Leaf(wire, Decimal, f"{consts.add(Decimal, 'Decimal')}({{v}})", tuple(checks))
    if annotation is int:
        _only(where, "int", c, {"gt", "ge", "lt", "le", "multiple_of"})
        if any(not isinstance(v, int) or isinstance(v, bool) for v in c.values()):
            raise UnsupportedModel(f"{where}: an int's constraints must be ints, not {c!r}")
        return _Leaf(typing.Annotated[int, msgspec.Meta(**c)] if c else int, int)
    if annotation is str:
        _only(where, "str", c, {"min_length", "max_length", "pattern"})
        if "pattern" in c:
            try:
                c["pattern"] = python_pattern(c["pattern"], engine)
            except UnsupportedModel as exc:
                raise UnsupportedModel(f"{where}: {exc}") from None
        return _Leaf(typing.Annotated[str, msgspec.Meta(**c)] if c else str, str)
    if c:
        raise UnsupportedModel(f"{where}: constraints {c!r} on {annotation!r} are not supported")
    if annotation is uuid.UUID or annotation is bool:
        return _Leaf(annotation, annotation)
    if typing.get_origin(annotation) is Literal:
        values = typing.get_args(annotation)
        if not all(type(v) in (str, int) for v in values):
            raise UnsupportedModel(f"{where}: only str and int literals are supported, not {annotation!r}")
        return _Leaf(annotation, annotation)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        if not all(type(m.value) in (str, int) for m in annotation):
            raise UnsupportedModel(f"{where}: only enums of str or int values are supported, not {annotation!r}")
        return _Leaf(annotation, annotation)
    raise UnsupportedModel(f"{where}: {annotation!r} is not a type the codec derivation supports")


def _field(model: type[BaseModel], name: str, info: FieldInfo, consts: _Constants, engine: str) -> _Field:
    where = f"{model.__name__}.{name}"
    if not name.isidentifier() or keyword.iskeyword(name):
        raise UnsupportedModel(f"{where}: a field name the generated code cannot use")
    for attr in _FIELD_REFUSALS:
        if getattr(info, attr, None):
            raise UnsupportedModel(f"{where}: {attr} is not supported by the codec derivation")
    if info.default_factory is not None:
        raise UnsupportedModel(f"{where}: default_factory is not supported by the codec derivation")
    annotation, optional = info.annotation, False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        arms = typing.get_args(annotation)
        if len(arms) != 2 or type(None) not in arms:
            raise UnsupportedModel(f"{where}: of unions only X | None is supported, not {annotation!r}")
        if info.metadata:
            raise UnsupportedModel(f"{where}: constraints on X | None as a whole are not supported")
        (arm,) = (a for a in arms if a is not type(None))
        inner = FieldInfo.from_annotation(arm)
        leaf, optional = _leaf(where, inner.annotation, inner.metadata, consts, engine), True
    else:
        leaf = _leaf(where, annotation, info.metadata, consts, engine)
    default = info.default
    wire_default: Any
    if default is PydanticUndefined:
        wire_default = msgspec.NODEFAULT
    elif (default is None and optional) or type(default) in _PLAIN_DEFAULTS or isinstance(default, enum.Enum):
        wire_default = default
    elif type(default) is Decimal and leaf.record is Decimal:
        wire_default = str(default)  # decoded by the converter like any wire value
    else:
        raise UnsupportedModel(f"{where}: default {default!r} is not supported by the codec derivation")
    return _Field(
        name,
        leaf.wire | None if optional else leaf.wire,
        leaf.record | None if optional else leaf.record,
        default,
        wire_default,
        leaf.convert,
        leaf.checks,
        optional,
    )


def _fields(model: type[BaseModel], consts: _Constants, skip: frozenset[str] = frozenset()) -> list[_Field]:
    if not (isinstance(model, type) and issubclass(model, BaseModel)) or issubclass(model, RootModel):
        raise UnsupportedModel(f"{model!r} is not a pydantic model with fields")
    config = set(model.model_config) - _HARMLESS_CONFIG
    if config:
        raise UnsupportedModel(f"{model.__name__}: config {sorted(config)} is not supported by the codec derivation")
    decorators = model.__pydantic_decorators__
    for kind in (
        "validators",
        "field_validators",
        "root_validators",
        "field_serializers",
        "model_serializers",
        "model_validators",
        "computed_fields",
    ):
        if getattr(decorators, kind):
            raise UnsupportedModel(f"{model.__name__}: {kind} cannot be carried into a codec")
    engine = model.model_config.get("regex_engine", "rust-regex")
    return [_field(model, n, f, consts, engine) for n, f in model.model_fields.items() if n not in skip]


def _wire(model: type[BaseModel], fields: list[_Field], extra: dict[str, Any], name: str) -> type[msgspec.Struct]:
    named = [(f.name, f.wire, f.wire_default) for f in fields]
    named += [(n, t, msgspec.NODEFAULT) for n, t in extra.items()]
    spec: list[tuple[str, Any] | tuple[str, Any, Any]] = [
        (n, t) if d is msgspec.NODEFAULT else (n, t, d) for n, t, d in named
    ]
    # kw_only: the model may have a field with a default before a required one; order
    # does not matter to decoding, and a wire value is never built by hand.
    return msgspec.defstruct(
        name, spec, module=model.__module__, frozen=True, forbid_unknown_fields=True, gc=False, kw_only=True
    )


def wire_struct(
    model: type[BaseModel], *, overrides: dict[str, Any] | None = None, name: str | None = None
) -> type[msgspec.Struct]:
    """Only the strict wire ``Struct`` of ``model``, with some fields' msgspec types given by hand.

    For an envelope whose model is deliberately loose about a field: ``IngestBatch.ticks``
    is ``list[dict]`` so that the model judges each tick on its own, while its fast path
    reads ``list[<IngestTick's wire>]``.
    """
    overrides = overrides or {}
    missing = set(overrides) - set(model.model_fields)
    if missing:
        raise UnsupportedModel(f"{model.__name__} has no fields {sorted(missing)}")
    fields = _fields(model, _Constants(), frozenset(overrides))
    return _wire(model, fields, overrides, name or f"_{model.__name__}Wire")


@dataclass(frozen=True)
class Codec:
    """The fast codec of one model; see the module docstring. Build it with :func:`derive`."""

    model: type[BaseModel]
    wire: type[msgspec.Struct]
    record: type[msgspec.Struct]
    #: ``wire`` value -> ``record``, or ``None`` if a derived check refuses it.
    from_wire: Callable[[Any], Any]
    #: A list of ``wire`` values -> a list of records, or ``None`` if any is refused.
    from_wires: Callable[[list[Any]], list[Any] | None]
    #: JSON bytes -> ``record``, or ``None`` for anything the fast path does not accept.
    decode: Callable[[bytes], Any]
    #: ``model(**fields).model_dump_json().encode()`` without the model.
    encode: Callable[..., bytes]
    #: ``encode`` of a record.
    encode_record: Callable[[Any], bytes]
    #: The generated Python source, for reading and debugging.
    source: str = field(repr=False)
    _namespace: dict[str, Any] = field(repr=False)
    _body: str = field(repr=False)

    def decoder(
        self, fallback: Callable[[bytes], Any], name: str = "decode", doc: str | None = None
    ) -> Callable[[bytes], Any]:
        """``decode``, but handing every payload the fast path refuses to ``fallback`` (the model)."""
        namespace = {**self._namespace, "_fallback": fallback}
        _run(_decode_source(name, self._body, "return _fallback(_payload)"), self.model, namespace)
        function: Callable[[bytes], Any] = namespace[name]
        function.__doc__ = doc
        return function


def _run(source: str, model: type[BaseModel], namespace: dict[str, Any]) -> None:
    """Define the functions of ``source`` in ``namespace``, as functions of ``model``'s module."""
    namespace["__name__"] = model.__module__
    exec(compile(source, f"<codec of {model.__module__}.{model.__qualname__}>", "exec"), namespace)


def _decode_source(name: str, body: str, refuse: str) -> str:
    return (
        f"def {name}(_payload):\n"
        "    try:\n"
        "        _w = _decode_wire(_payload)\n"
        "    except _MsgspecError:\n"
        f"        {refuse}\n" + body.replace("{refuse}", refuse)
    )


def _convert_source(fields: list[_Field], indent: str) -> tuple[str, list[str]]:
    """Lines turning ``_w`` into record arguments (``{refuse}`` where a check fails), and the arguments."""
    lines, args = [], []
    for f in fields:
        if f.convert is None and not f.checks:
            args.append(f"_w.{f.name}")
            continue
        v = f"v_{f.name}"
        args.append(v)
        fail = " and ".join(c.format(v=v) for c in f.checks)
        if f.optional:
            lines.append(f"{v} = _w.{f.name}")
            lines.append(f"if {v} is not None:")
            if f.convert:
                lines.append(f"    {v} = {f.convert.format(v=v)}")
            if fail:
                lines.append(f"    if not ({fail}):")
                lines.append("        {refuse}")
        else:
            lines.append(f"{v} = {(f.convert or '{v}').format(v=f'_w.{f.name}')}")
            if fail:
                lines.append(f"if not ({fail}):")
                lines.append("    {refuse}")
    return "".join(f"{indent}{line}\n" for line in lines), args


def derive(model: type[BaseModel], *, record_name: str | None = None, share: tuple[str, ...] = ()) -> Codec:
    """The fast codec of ``model``; raise ``UnsupportedModel`` if any field cannot be carried.

    ``record_name`` names the record class (bind it under that name in ``model``'s module,
    so it pickles); ``share`` names properties or methods of the model the record has
    too (``IngestTick.ts_event``): the same function, not a copy.
    """
    consts = _Constants()
    fields = _fields(model, consts)
    wire = _wire(model, fields, {}, f"_{model.__name__}Wire")
    namespace_of_record = {}
    for attr in share:
        value = model.__dict__.get(attr)
        if value is None:
            raise UnsupportedModel(f"{model.__name__} defines no {attr!r} to share with its record")
        namespace_of_record[attr] = value
    record = msgspec.defstruct(
        record_name or f"{model.__name__}Record",
        [(f.name, f.record) for f in fields],
        module=model.__module__,
        namespace=namespace_of_record,
        frozen=True,
        gc=False,
    )

    namespace: dict[str, Any] = {
        **consts.names,
        "_R": record,
        "_decode_wire": msgspec.json.Decoder(wire).decode,
        "_MsgspecError": msgspec.MsgspecError,
        "_encode": msgspec.json.Encoder().encode,
    }
    convert, args = _convert_source(fields, "    ")
    record_args = ", ".join(args)
    body = convert + f"    return _R({record_args})\n"
    many_convert, _ = _convert_source(fields, "        ")
    # Constant fields (a single literal, defaulted to it) are written, not asked for.
    params, values = [], []
    for f in fields:
        literal = typing.get_args(f.record) if typing.get_origin(f.record) is Literal else ()
        if len(literal) == 1 and f.default == literal[0]:
            values.append(consts.add(f.default, f"const_{f.name}"))
        elif f.default is PydanticUndefined:
            params.append(f.name)
            values.append(f.name)
        else:
            params.append(f"{f.name}={consts.add(f.default, f'default_{f.name}')}")
            values.append(f.name)
    namespace.update(consts.names)
    source = (
        "def from_wire(_w):\n" + body.replace("{refuse}", "return None") + "\ndef from_wires(_ws):\n"
        "    _out = []\n"
        "    _append = _out.append\n"
        "    for _w in _ws:\n"
        + many_convert.replace("{refuse}", "return None")
        + f"        _append(_R({record_args}))\n"
        "    return _out\n\n"
        + _decode_source("decode", body, "return None")
        + f"\ndef encode(*, {', '.join(params)}):\n"
        f"    return _encode(_R({', '.join(values)}))\n"
    )
    _run(source, model, namespace)
    return Codec(
        model=model,
        wire=wire,
        record=record,
        from_wire=namespace["from_wire"],
        from_wires=namespace["from_wires"],
        decode=namespace["decode"],
        encode=namespace["encode"],
        encode_record=namespace["_encode"],
        source=source,
        _namespace=namespace,
        _body=body,
    )
