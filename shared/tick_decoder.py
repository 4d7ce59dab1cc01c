"""Fast decoding of ``MarketTick``, the one event that flows at tens of thousands per second.

pydantic validates a tick from JSON in ~6.5 µs here, most of it building and
checking four Decimals, and every tick is decoded twice: by data-bridge's bar
stage and by database-service's storing consumer. msgspec decodes the canonical
JSON (what ``encode_tick`` and ``encode_event`` write) in ~3 µs.

``MarketTick`` stays the contract, and the fast path is derived from it
(``shared.events.MARKET_TICK``, see ``shared.codecs``). It is *stricter* than the model
and hands whatever it does not accept to pydantic, which decides (and gives the
dead-letter reason), so a payload decodes to the same values either way. Stricter
means: no field but the model's; decimals only as plain JSON strings (``"1.10016"``:
no exponent, sign or leading zero, at most 10 integer and 8 fraction digits, which is
inside the model's 18 digits / 8 places); integers only as JSON integers of 64 bits.
``tests/shared/test_tick_decoder.py`` holds it to that with hypothesis: whatever the
fast path accepts, the model accepts, equally.
"""

from __future__ import annotations

from functools import partial

from shared.events import MARKET_TICK, MarketTick, TickRecord, decode_event

__all__ = ["AnyTick", "TickRecord", "decode_tick"]

#: What a tick consumer handles: the model, or the fast path's record of the same values.
AnyTick = MarketTick | TickRecord

decode_tick = MARKET_TICK.decoder(
    partial(decode_event, MarketTick),
    name="decode_tick",
    doc="Decode one ``market.ticks`` payload; raise ``EventDecodeError`` (with the model's reason) if invalid.",
)
