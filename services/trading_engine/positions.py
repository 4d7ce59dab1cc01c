"""Net positions: what one fill does to a position (pure arithmetic, Decimal throughout).

A position is signed (> 0 long, < 0 short, in lots) with the average price of its open
quantity. A fill in the position's direction (or on a flat position) adds to it at a new
average price; a fill against it closes up to the open quantity, realising
``closed * contract_size * (price - average) * direction``, and any rest opens the other
way at the fill's price. The margin held is the open notional at the average price times
the margin rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from services.trading_engine.orders.models import PRICE_EXPONENT
from shared.events import Side

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Position:
    quantity: Decimal = ZERO
    average_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO

    def margin(self, contract_size: Decimal, margin_rate: Decimal) -> Decimal:
        """Margin the open quantity holds."""
        return abs(self.quantity) * contract_size * self.average_price * margin_rate


@dataclass(frozen=True, slots=True)
class FillEffect:
    position: Position
    #: Profit or loss realised by the part of the fill that closed the position (before commission).
    realized_pnl: Decimal


def apply_fill(position: Position, side: Side, quantity: Decimal, price: Decimal, contract_size: Decimal) -> FillEffect:
    """The position after a fill of ``quantity`` lots at ``price``, and the PnL it realised."""
    signed = quantity if side == "buy" else -quantity
    held = position.quantity
    if held == 0 or (held > 0) == (signed > 0):
        total = abs(held) + quantity
        average = ((abs(held) * position.average_price + quantity * price) / total).quantize(PRICE_EXPONENT)
        return FillEffect(Position(held + signed, average, position.realized_pnl), ZERO)
    closed = min(quantity, abs(held))
    direction = 1 if held > 0 else -1
    realized = closed * contract_size * (price - position.average_price) * direction
    after = held + signed
    if after == 0:
        average = ZERO
    elif (after > 0) == (held > 0):
        average = position.average_price  # partly closed: the rest keeps its price
    else:
        average = price  # crossed: the rest opened the other way at this fill's price
    return FillEffect(Position(after, average, position.realized_pnl + realized), realized)
