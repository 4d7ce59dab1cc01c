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

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.codecs import derive, wire_struct
from shared.events import Price, Quantity, Symbol
from shared.kit.problems import Problem


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


#: ``IngestTick``'s fast codec, derived from the model (``shared.codecs``).
INGEST_TICK = derive(IngestTick, record_name="PlainTick", share=("ts_event",))
#: A tick read by the fast path: ``IngestTick``'s fields and values (and its ``ts_event``).
if TYPE_CHECKING:
    PlainTick = IngestTick  # generated, with the model's fields and values (and its ts_event)
else:
    PlainTick = INGEST_TICK.record

# The envelope's model takes each tick as a dict, so that the model judges each on its
# own; its fast path reads every tick in IngestTick's canonical form.
_wire_batch = wire_struct(IngestBatch, overrides={"ticks": list[INGEST_TICK.wire]})  # type: ignore[name-defined]
_decode_wire: Callable[[bytes], Any] = msgspec.json.Decoder(_wire_batch).decode
_plain_ticks = INGEST_TICK.from_wires


def decode_plain_batch(body: bytes, max_ticks: int) -> tuple[str, list[PlainTick]] | None:
    """The source and ticks if the whole batch is in the canonical form and valid, else ``None``."""
    try:
        wire = _decode_wire(body)
    except msgspec.MsgspecError:
        return None
    _check_size(len(wire.ticks), max_ticks)
    ticks = _plain_ticks(wire.ticks)  # None if a tick fails a check the wire cannot express (a zero price)
    return None if ticks is None else (wire.source, ticks)
