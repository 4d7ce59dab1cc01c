"""Positions, realised and unrealised PnL, and trades of one account: exact (``Decimal``), pure.

Netting positions at an average price, as the engine keeps them: one signed position per
symbol. A fill in the position's direction (or from flat) adds to it at the weighted average
price; a fill against it closes ``min(|position|, quantity)`` lots, realising
``closed * contract_size * (price - average) * sign(position)``, and whatever is left of the
fill opens a position the other way at the fill's price (a flip). The average price of what
remains open does not change when part of it is closed.

A **trade** is a round trip from flat to flat: opened by the fill that leaves flat, closed by
the fill that returns to it (a flip closes one trade and opens the next). Its attribution
(strategy, bot, signal, models) is the opening fill's; fills that add to it later count in it
whatever order they came from. A fill's commission is charged to the trade it belongs to; a
flipping fill's commission is split between the two trades in proportion to the lots closing
and opening. docs/performance.md has the formulas.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class FillFact:
    """One fill as the ledger applies it: the event's facts plus what was decided when it arrived
    (the model weights and the signal's confidence), stored with it so a rebuild replays it exactly."""

    fill_id: uuid.UUID
    tenant: str
    account_id: str
    symbol: str
    side: Literal["buy", "sell"]
    quantity: Decimal
    price: Decimal
    commission: Decimal
    ts_ns: int
    contract_size: Decimal
    strategy: str | None = None
    bot_id: str | None = None
    signal_id: str | None = None
    #: ``name:version`` -> share of a trade's result attributed to the model (they sum to 1, or empty).
    model_weights: Mapping[str, float] = field(default_factory=dict)
    #: The confidence of the signal behind the order, when it was known.
    confidence: float | None = None

    @property
    def signed_quantity(self) -> Decimal:
        return self.quantity if self.side == "buy" else -self.quantity


@dataclass(slots=True)
class Trade:
    """A round trip from flat to flat of one symbol in one account."""

    trade_id: uuid.UUID  # the opening fill's id
    symbol: str
    direction: Literal["long", "short"]
    opened_ns: int
    strategy: str | None
    bot_id: str | None
    signal_id: str | None
    model_weights: Mapping[str, float]
    confidence: float | None
    realised: Decimal = ZERO  # gross, before commissions
    commission: Decimal = ZERO
    closed_ns: int | None = None
    #: The largest position the trade reached, lots.
    peak_quantity: Decimal = ZERO

    @property
    def net(self) -> Decimal:
        return self.realised - self.commission


@dataclass(slots=True)
class Position:
    """A symbol's open position: signed lots at an average price, and the trade it belongs to."""

    symbol: str
    contract_size: Decimal
    quantity: Decimal = ZERO
    average_price: Decimal = ZERO
    trade: Trade | None = None
    #: The last fill's price: the mark until a tick of the symbol arrived.
    last_fill_price: Decimal = ZERO

    def unrealised(self, bid: Decimal | None, ask: Decimal | None) -> Decimal:
        """Open PnL at the price the position could be closed at: a long at the bid, a short at
        the ask (MT5's convention); the last fill's price when no quote is known."""
        if self.quantity == 0:
            return ZERO
        mark = (bid if self.quantity > 0 else ask) or self.last_fill_price
        return self.quantity * self.contract_size * (mark - self.average_price)

    def notional(self, bid: Decimal | None, ask: Decimal | None) -> Decimal:
        """Signed value of the position at the same mark."""
        mark = (bid if self.quantity > 0 else ask) or self.last_fill_price
        return self.quantity * self.contract_size * mark


@dataclass(frozen=True, slots=True)
class Applied:
    """What one fill did: the realised PnL and commission it booked, per trade it touched."""

    #: (trade, realised gross, commission) in the order booked: the closing part first.
    bookings: tuple[tuple[Trade, Decimal, Decimal], ...]
    #: The trade it closed, if any.
    closed: Trade | None


def _open_trade(fill: FillFact, direction: Literal["long", "short"]) -> Trade:
    return Trade(
        trade_id=fill.fill_id,
        symbol=fill.symbol,
        direction=direction,
        opened_ns=fill.ts_ns,
        strategy=fill.strategy,
        bot_id=fill.bot_id,
        signal_id=fill.signal_id,
        model_weights=dict(fill.model_weights),
        confidence=fill.confidence,
    )


def apply_fill(position: Position, fill: FillFact) -> Applied:
    """Book ``fill`` on ``position`` (mutated) and say what it realised."""
    position.last_fill_price = fill.price
    signed = fill.signed_quantity
    held = position.quantity
    if held == 0 or (held > 0) == (signed > 0):  # opens or adds
        if position.trade is None:
            position.trade = _open_trade(fill, "long" if signed > 0 else "short")
        total = held + signed
        position.average_price = (abs(held) * position.average_price + fill.quantity * fill.price) / abs(total)
        position.quantity = total
        adding = position.trade
        adding.commission += fill.commission
        adding.peak_quantity = max(adding.peak_quantity, abs(total))
        return Applied(((adding, ZERO, fill.commission),), None)
    # reduces, closes or flips
    trade = position.trade
    assert trade is not None, "an open position always has its trade"
    closing = min(abs(held), fill.quantity)
    opening = fill.quantity - closing
    direction = 1 if held > 0 else -1
    realised = closing * position.contract_size * (fill.price - position.average_price) * direction
    closing_commission = fill.commission * closing / fill.quantity
    trade.realised += realised
    trade.commission += closing_commission
    bookings: list[tuple[Trade, Decimal, Decimal]] = [(trade, realised, closing_commission)]
    position.quantity = held + signed
    closed: Trade | None = None
    if abs(held) == closing:  # back to flat, perhaps beyond
        trade.closed_ns = fill.ts_ns
        closed = trade
        position.trade = None
        position.average_price = ZERO
        if opening > 0:
            new = _open_trade(fill, "long" if signed > 0 else "short")
            new.commission = fill.commission - closing_commission
            new.peak_quantity = opening
            position.trade = new
            position.average_price = fill.price
            bookings.append((new, ZERO, new.commission))
    return Applied(tuple(bookings), closed)
