"""Fast decoding of ``MarketTick``, the one event that flows at tens of thousands per second.

pydantic validates a tick from JSON in ~6.5 µs here, most of it building and
checking four Decimals, and every tick is decoded twice: by data-bridge's bar
stage and by database-service's storing consumer. msgspec decodes the canonical
JSON (what ``encode_tick`` and ``encode_event`` write) in ~3 µs.

``MarketTick`` stays the contract. The fast path is *stricter* than the model and
hands whatever it does not accept to pydantic, which decides (and gives the
dead-letter reason), so a payload decodes to the same values either way.
Stricter means: every field present and no other; decimals only as plain JSON
strings (``"1.10016"``: no exponent, sign or leading zero, at most 18 integer and
10 fraction digits, which is inside the model's 28 digits / 10 places); integers
only as JSON integers of 64 bits. ``tests/shared/test_tick_decoder.py`` holds it to
that with hypothesis: whatever the fast path accepts, the model accepts, equally.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, Literal

import msgspec

from shared.events import SYMBOL_PATTERN_PY, MarketTick, decode_event

__all__ = ["AnyTick", "NonNegative", "PlainDecimal", "SymbolText", "TickRecord", "decode_tick"]

# ``\Z``, not ``$``: msgspec checks patterns with Python's ``re``, where ``$`` also
# matches before a final newline (the model's Rust regex does not).
#: A decimal as a plain JSON string that fits ``Price``/``Quantity`` (>= 0, 18 + 10 digits).
PlainDecimal = Annotated[str, msgspec.Meta(pattern=r"^(?:0|[1-9][0-9]{0,17})(?:\.[0-9]{1,10})?\Z")]
#: ``shared.events.Symbol`` for msgspec.
SymbolText = Annotated[str, msgspec.Meta(pattern=SYMBOL_PATTERN_PY)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class _WireTick(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """A tick exactly as the canonical encoders write it."""

    event_id: uuid.UUID
    ts_event: NonNegative
    ts_init: NonNegative
    event_type: Literal["market.tick"]
    schema_version: Literal[1]
    symbol: SymbolText
    bid: PlainDecimal
    ask: PlainDecimal
    last: PlainDecimal | None
    volume: PlainDecimal
    flags: int
    source: Annotated[str, msgspec.Meta(max_length=64)]


class TickRecord(msgspec.Struct, frozen=True, gc=False):
    """A decoded tick: ``MarketTick``'s fields and values, without a pydantic model per tick.

    Read-only like the model. Not tracked by the garbage collector (``gc=False``):
    a consumer holds thousands at a time, and tracked objects lengthen every collection.
    """

    event_id: uuid.UUID
    ts_event: int
    ts_init: int
    symbol: str
    bid: Decimal
    ask: Decimal
    last: Decimal | None
    volume: Decimal
    flags: int
    source: str
    event_type: Literal["market.tick"] = "market.tick"
    schema_version: Literal[1] = 1


#: What a tick consumer handles: the model, or the fast path's record of the same values.
AnyTick = MarketTick | TickRecord

_decode_wire = msgspec.json.Decoder(_WireTick).decode


def decode_tick(payload: bytes) -> AnyTick:
    """Decode one ``market.ticks`` payload; raise ``EventDecodeError`` (with the model's reason) if invalid."""
    try:
        wire = _decode_wire(payload)
    except msgspec.MsgspecError:
        return decode_event(MarketTick, payload)
    bid, ask = Decimal(wire.bid), Decimal(wire.ask)
    if not (bid and ask):  # prices must be > 0: let the model refuse it, with its reason
        return decode_event(MarketTick, payload)
    last = wire.last
    return TickRecord(
        wire.event_id,
        wire.ts_event,
        wire.ts_init,
        wire.symbol,
        bid,
        ask,
        None if last is None else Decimal(last),
        Decimal(wire.volume),
        wire.flags,
        wire.source,
    )
