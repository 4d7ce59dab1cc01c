"""Stop-loss and trailing stop of a bot's open position, held by the engine.

A long is protected below its entry, a short above. The stop-loss is fixed at the entry (a distance
in price units, or a multiple of the ATR at entry); the trailing stop follows the best price the
position has seen (the highest bid of a long, the lowest ask of a short) at its distance, and only
in the position's favour: it never loosens. Both trigger on the price the position would close at:
the bid for a long, the ask for a short. ``level`` is the tighter of the two: the one protective
stop to place at a venue that supports them (and to move there when the trail ratchets).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol

Side = Literal["long", "short"]


class StopSettings(Protocol):
    """The stop fields of a bot's config (``BotConfig``)."""

    @property
    def stop_loss(self) -> str: ...
    @property
    def stop_distance(self) -> Decimal | None: ...
    @property
    def stop_atr_multiple(self) -> Decimal | None: ...
    @property
    def trailing(self) -> str: ...
    @property
    def trail_distance(self) -> Decimal | None: ...
    @property
    def trail_atr_multiple(self) -> Decimal | None: ...


class AtrUnknown(ValueError):
    """An ATR stop asked for while the ATR is not known yet (indicator warm-up): no entry."""


@dataclass(frozen=True, slots=True)
class StopHit:
    """A stop triggered: close the position (``kind`` says which stop, ``price`` what touched it)."""

    kind: Literal["stop_loss", "trailing_stop"]
    level: Decimal
    price: Decimal


@dataclass
class StopTracker:
    """The stops of one open position."""

    side: Side
    entry: Decimal
    #: The fixed stop-loss level (``None``: none).
    stop_loss: Decimal | None = None
    #: The trailing distance in price units (``None``: no trailing stop).
    trail_distance: Decimal | None = None
    #: Best price seen since the entry (the trail's anchor).
    best: Decimal | None = None

    @classmethod
    def open(cls, side: Side, entry: Decimal, settings: StopSettings, atr: Decimal | None) -> StopTracker:
        """The stops of a position opened at ``entry``; raises ``AtrUnknown`` for an ATR stop without an ATR."""
        stop_distance = _distance(settings.stop_loss, settings.stop_distance, settings.stop_atr_multiple, atr)
        trail = _distance(settings.trailing, settings.trail_distance, settings.trail_atr_multiple, atr)
        stop = None
        if stop_distance is not None:
            stop = entry - stop_distance if side == "long" else entry + stop_distance
        return cls(side, entry, stop, trail, entry)

    @property
    def trail_level(self) -> Decimal | None:
        if self.trail_distance is None or self.best is None:
            return None
        return self.best - self.trail_distance if self.side == "long" else self.best + self.trail_distance

    @property
    def level(self) -> Decimal | None:
        """The protective stop now: the tighter of the stop-loss and the trail (``None``: no stop)."""
        levels = [x for x in (self.stop_loss, self.trail_level) if x is not None]
        if not levels:
            return None
        return max(levels) if self.side == "long" else min(levels)

    def on_price(self, bid: Decimal, ask: Decimal) -> StopHit | None:
        """Take a quote: ratchet the trail in the position's favour, then say whether a stop triggered."""
        price = bid if self.side == "long" else ask
        if self.best is None:
            self.best = price
        elif self.side == "long":
            self.best = max(self.best, price)
        else:
            self.best = min(self.best, price)
        if self.stop_loss is not None and _touched(self.side, price, self.stop_loss):
            return StopHit("stop_loss", self.stop_loss, price)
        trail = self.trail_level
        if trail is not None and _touched(self.side, price, trail):
            return StopHit("trailing_stop", trail, price)
        return None

    def to_json(self) -> dict[str, str | None]:
        return {
            "side": self.side,
            "entry": str(self.entry),
            "stop_loss": _text(self.stop_loss),
            "trail_distance": _text(self.trail_distance),
            "best": _text(self.best),
        }

    @classmethod
    def from_json(cls, data: dict[str, str | None]) -> StopTracker:
        side = data["side"]
        if side not in ("long", "short"):
            raise ValueError(f"stop side {side!r}")
        return cls(
            "long" if side == "long" else "short",
            Decimal(str(data["entry"])),
            _decimal(data.get("stop_loss")),
            _decimal(data.get("trail_distance")),
            _decimal(data.get("best")),
        )


def _distance(kind: str, distance: Decimal | None, multiple: Decimal | None, atr: Decimal | None) -> Decimal | None:
    if kind == "distance":
        return distance
    if kind == "atr":
        if atr is None or atr <= 0 or multiple is None:
            raise AtrUnknown("an ATR stop needs the ATR, not known yet")
        return multiple * atr
    return None


def _touched(side: Side, price: Decimal, level: Decimal) -> bool:
    return price <= level if side == "long" else price >= level


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)
