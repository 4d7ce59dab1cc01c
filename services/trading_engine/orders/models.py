"""What an order is: the request a caller makes, the order as stored, and its event."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict

from shared.events import (
    ExternalId,
    OrderAttribution,
    OrderQuantity,
    OrderState,
    OrderType,
    OrderUpdated,
    Price,
    Side,
    Symbol,
    TimeInForce,
    order_event_id,
)

#: Prices and average prices are kept to the events' precision (8 decimal places).
PRICE_EXPONENT = Decimal("1e-8")


def decimal_text(value: Decimal | None) -> str | None:
    """A decimal as the API shows it: fixed-point, never exponent notation (``100000``, not ``1E+5``)."""
    return None if value is None else format(value, "f")


class OrderRequest(BaseModel):
    """An order as a caller asks for it (``POST /api/v1/orders``); prices and quantities as decimal strings.

    ``limit_price`` is required by ``limit`` and ``stop_limit`` orders, ``stop_price`` by ``stop``
    and ``stop_limit``; a ``market`` order has neither. ``quantity`` is in lots.
    ``client_order_id``: chosen by the caller (unique per account), or made up by the engine.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    account_id: ExternalId
    symbol: Symbol
    side: Side
    type: OrderType
    quantity: OrderQuantity
    limit_price: Price | None = None
    stop_price: Price | None = None
    time_in_force: TimeInForce = "gtc"
    client_order_id: ExternalId | None = None
    #: Protective prices, held by the engine and placed at the venue where it supports them.
    stop_loss: Price | None = None
    take_profit: Price | None = None


@dataclass(frozen=True, slots=True)
class Order:
    """An order as stored (``trading.orders``)."""

    id: uuid.UUID
    tenant: str
    account_id: str
    venue: str
    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None
    time_in_force: TimeInForce
    stop_loss: Decimal | None
    take_profit: Decimal | None
    state: OrderState
    version: int
    filled_quantity: Decimal
    average_fill_price: Decimal | None
    venue_order_id: str | None
    reason_code: str | None
    reason: str | None
    attribution: OrderAttribution
    actor: str
    submitted_ns: int | None = None

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled_quantity

    def moved(self, state: OrderState, **changes: Any) -> Order:
        """This order one version later, in ``state`` (the caller checked the transition)."""
        return replace(self, state=state, version=self.version + 1, **changes)

    def event(self, previous_state: OrderState | None, ts_ns: int) -> OrderUpdated:
        """The ``OrderUpdated`` of this version (its id is derived from the order and the version)."""
        return OrderUpdated(
            event_id=order_event_id(self.id, self.version),
            ts_event=ts_ns,
            ts_init=ts_ns,
            order_id=self.id,
            version=self.version,
            client_order_id=self.client_order_id,
            tenant=self.tenant,
            account_id=self.account_id,
            venue=self.venue,  # type: ignore[arg-type]
            symbol=self.symbol,
            side=self.side,
            type=self.type,
            quantity=self.quantity,
            limit_price=self.limit_price,
            stop_price=self.stop_price,
            time_in_force=self.time_in_force,
            state=self.state,
            previous_state=previous_state,
            filled_quantity=self.filled_quantity,
            average_fill_price=self.average_fill_price,
            venue_order_id=self.venue_order_id,
            reason_code=self.reason_code,
            reason=self.reason[:500] if self.reason else None,
            attribution=self.attribution,
        )

    def public(self) -> dict[str, Any]:
        """The order as the API shows it (decimals as strings)."""
        text = decimal_text
        return {
            "id": str(self.id),
            "client_order_id": self.client_order_id,
            "account_id": self.account_id,
            "venue": self.venue,
            "symbol": self.symbol,
            "side": self.side,
            "type": self.type,
            "quantity": text(self.quantity),
            "limit_price": text(self.limit_price),
            "stop_price": text(self.stop_price),
            "time_in_force": self.time_in_force,
            "stop_loss": text(self.stop_loss),
            "take_profit": text(self.take_profit),
            "state": self.state,
            "version": self.version,
            "filled_quantity": text(self.filled_quantity),
            "average_fill_price": text(self.average_fill_price),
            "venue_order_id": self.venue_order_id,
            "reason_code": self.reason_code,
            "reason": self.reason,
            "attribution": self.attribution.model_dump(mode="json"),
        }
