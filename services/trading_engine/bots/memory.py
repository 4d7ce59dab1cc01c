"""A bot's strategy state: everything it must remember to resume exactly after a restart.

Stored as one JSON document with the bot (``trading.bots.memory``), written after every input the
bot acted on. Holds the position the bot believes it holds (side, lots, entry, its stops), the RSI
rule's maturity count and the last trend reading, the newest input it processed (event time and
id) and the SignalDeduplicator's fingerprints within their window, so a signal redelivered after a
restart is recognised as already seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from services.trading_engine.bots.stops import StopTracker
from shared.strategies.rsi import Trend

Believed = Literal["flat", "long", "short"]


@dataclass
class BotMemory:
    position: Believed = "flat"
    quantity: Decimal = Decimal(0)
    entry_price: Decimal | None = None
    stops: StopTracker | None = None
    #: The ATR when the open intent was decided: the fill's stops are placed from it.
    entry_atr: Decimal | None = None
    #: Client order id of the last intent sent and not yet confirmed by a fill or a refusal.
    pending_order: str | None = None
    #: Closed bars seen (the RSI rule's maturity).
    bars: int = 0
    trend: Trend = None
    #: Event time (ns) and id of the newest input acted on; an older input is a replay.
    last_input_ns: int = -1
    last_input_id: str | None = None
    #: (fingerprint, event time ns) within the dedup window, oldest first.
    fingerprints: list[tuple[str, int]] = field(default_factory=list)
    intents: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "quantity": str(self.quantity),
            "entry_price": None if self.entry_price is None else str(self.entry_price),
            "stops": None if self.stops is None else self.stops.to_json(),
            "entry_atr": None if self.entry_atr is None else str(self.entry_atr),
            "pending_order": self.pending_order,
            "bars": self.bars,
            "trend": self.trend,
            "last_input_ns": self.last_input_ns,
            "last_input_id": self.last_input_id,
            "fingerprints": [[fp, ts] for fp, ts in self.fingerprints],
            "intents": self.intents,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BotMemory:
        position = data.get("position", "flat")
        if position not in ("flat", "long", "short"):
            raise ValueError(f"bot memory: position {position!r}")
        trend = data.get("trend")
        entry, atr, stops = data.get("entry_price"), data.get("entry_atr"), data.get("stops")
        return cls(
            position=position,
            quantity=Decimal(str(data.get("quantity", "0"))),
            entry_price=None if entry is None else Decimal(str(entry)),
            stops=None if stops is None else StopTracker.from_json(stops),
            entry_atr=None if atr is None else Decimal(str(atr)),
            pending_order=data.get("pending_order"),
            bars=int(data.get("bars", 0)),
            trend=trend if trend in ("up", "down") else None,
            last_input_ns=int(data.get("last_input_ns", -1)),
            last_input_id=data.get("last_input_id"),
            fingerprints=[(str(fp), int(ts)) for fp, ts in data.get("fingerprints", [])],
            intents=int(data.get("intents", 0)),
        )
