"""The body of ``POST /api/v1/ingest/ticks``: the models, and two ways to read it that agree.

``decode_batch`` judges each tick with the pydantic model (``IngestTick``), so a bad
tick gets its own reason and the rest go on. That costs ~5 µs per tick, a sixth of
data-bridge's work per tick; the client tier sends a canonical form (decimals as
plain strings, every tick valid) that msgspec reads in a fraction of it.
``decode_plain_batch`` reads only that form and answers ``None`` for anything else,
which then goes through ``decode_batch``: so a batch decodes to the same ticks
either way (``tests/services/data_bridge/test_ingest_body.py``, with hypothesis).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

import msgspec
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.events import Price, Quantity, Symbol
from shared.kit.problems import Problem
from shared.tick_decoder import NonNegative, PlainDecimal, SymbolText


class IngestTick(BaseModel):
    """One tick as the client tier sends it: the fields of MT5's ``MqlTick``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    symbol: Symbol
    time_msc: Annotated[int, Field(ge=0, description="tick time, ms since the Unix epoch (UTC)")]
    bid: Price
    ask: Price
    last: Quantity | None = None
    volume: Quantity = Decimal(0)
    flags: Annotated[int, Field(ge=0)] = 0

    @property
    def ts_event(self) -> int:
        """Tick time in ns, as ``MarketTick.ts_event`` (what the validator checks)."""
        return self.time_msc * 1_000_000


class IngestBatch(BaseModel):
    """Request body of ``POST /api/v1/ingest/ticks``."""

    model_config = ConfigDict(extra="forbid")

    source: Annotated[str, Field(min_length=1, max_length=64)] = "client"
    ticks: list[dict[str, Any]]


class Malformed(BaseModel):
    """A tick the model refused, by its index in the request."""

    index: int
    detail: str


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where}: {first['msg']}" if where else first["msg"]


def _check_size(count: int, max_ticks: int) -> None:
    if count > max_ticks:
        raise Problem(413, f"at most {max_ticks} ticks per request")


def decode_batch(body: bytes, max_ticks: int) -> tuple[str, list[IngestTick | Malformed]]:
    """The source and, per tick, the validated tick or why it is malformed.

    422 if the envelope is wrong, 413 (before judging any tick) if it has more than ``max_ticks``.
    """
    try:
        batch = IngestBatch.model_validate_json(body)
    except ValidationError as exc:
        raise Problem(422, _first_error(exc)) from exc
    _check_size(len(batch.ticks), max_ticks)
    items: list[IngestTick | Malformed] = []
    for index, raw in enumerate(batch.ticks):
        try:
            items.append(IngestTick.model_validate(raw))
        except ValidationError as exc:
            items.append(Malformed(index=index, detail=_first_error(exc)))
    return batch.source, items


class PlainTick(msgspec.Struct, frozen=True, gc=False):
    """A tick read by the fast path: ``IngestTick``'s fields and values."""

    symbol: str
    time_msc: int
    bid: Decimal
    ask: Decimal
    last: Decimal | None
    volume: Decimal
    flags: int

    @property
    def ts_event(self) -> int:
        return self.time_msc * 1_000_000


class _WireTick(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    symbol: SymbolText
    time_msc: NonNegative
    bid: PlainDecimal
    ask: PlainDecimal
    last: PlainDecimal | None = None
    volume: PlainDecimal = "0"
    flags: NonNegative = 0


class _WireBatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    ticks: list[_WireTick]
    source: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "client"


_decode_wire = msgspec.json.Decoder(_WireBatch).decode


def decode_plain_batch(body: bytes, max_ticks: int) -> tuple[str, list[PlainTick]] | None:
    """The source and ticks if the whole batch is in the canonical form and valid, else ``None``."""
    try:
        wire = _decode_wire(body)
    except msgspec.MsgspecError:
        return None
    _check_size(len(wire.ticks), max_ticks)
    ticks = []
    for w in wire.ticks:
        bid, ask = Decimal(w.bid), Decimal(w.ask)
        if not (bid and ask):  # a zero price is refused by the model, with its reason
            return None
        ticks.append(
            PlainTick(
                w.symbol, w.time_msc, bid, ask, None if w.last is None else Decimal(w.last), Decimal(w.volume), w.flags
            )
        )
    return wire.source, ticks
