"""The one interface every venue (paper, MT5) implements, and what venues report back.

The engine owns the orders; a venue executes them and is the truth about what it did. The
engine talks to a venue in two directions:

* **commands** (``submit``, ``cancel``): a command either reaches the venue or raises
  ``VenueUnreachable``; a command whose answer was lost raises ``VenueTimeout`` and the order
  becomes ``unknown`` (never dropped, never sent again blindly);
* **reports** (``VenueReport``) about orders the venue holds: accepted, rejected, a fill,
  canceled, expired. A venue delivers them to the ``ReportSink`` it was built with, at least
  once and in order per order; the engine handles each idempotently (a fill by its
  ``venue_fill_id``, a state by the state machine).

Reconciliation asks the venue directly (``order_status``, ``open_orders``, ``positions``,
``fills_since``): on start, for every order in ``pending_submit`` or ``unknown``, and
periodically. Every order carries its ``client_order_id`` to the venue, which is how an
order whose acknowledgement was lost is found there later.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, Protocol

from shared.events import OrderType, Side, TimeInForce

ReportKind = Literal["accepted", "rejected", "fill", "canceled", "expired"]
#: What a venue knows of an order; ``not_found`` when it never received it.
VenueOrderState = Literal["accepted", "partially_filled", "filled", "canceled", "rejected", "expired", "not_found"]


class VenueUnreachable(Exception):
    """The command did not reach the venue (connection refused, link down): nothing happened there."""


class VenueTimeout(Exception):
    """The command may have reached the venue, but its answer was lost: the order's fate is unknown."""


@dataclass(frozen=True, slots=True)
class VenueOrder:
    """An order as the engine sends it to a venue."""

    order_id: uuid.UUID
    client_order_id: str
    account_id: str
    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    time_in_force: TimeInForce
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    #: Protective prices placed at the venue with the order, where it supports them.
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None


@dataclass(frozen=True, slots=True)
class VenueFill:
    """One execution at the venue."""

    venue_fill_id: str
    quantity: Decimal
    price: Decimal
    commission: Decimal
    ts_ns: int


@dataclass(frozen=True, slots=True)
class VenueReport:
    """Something the venue did to one order (``fill`` set when ``kind == "fill"``)."""

    kind: ReportKind
    account_id: str
    client_order_id: str
    ts_ns: int
    venue_order_id: str | None = None
    fill: VenueFill | None = None
    reason_code: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class VenueOrderStatus:
    """The venue's whole view of one order, with every fill it made."""

    client_order_id: str
    state: VenueOrderState
    venue_order_id: str | None = None
    filled_quantity: Decimal = Decimal(0)
    fills: tuple[VenueFill, ...] = field(default=())
    reason_code: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class VenuePosition:
    """A net position at the venue (``quantity`` signed: > 0 long, < 0 short, in lots)."""

    account_id: str
    symbol: str
    quantity: Decimal
    average_price: Decimal
    #: The venue's id of the position (MT5 ticket), if it has one.
    venue_position_id: str | None = None


ReportSink = Callable[[VenueReport], Awaitable[None]]


class Venue(Protocol):
    """A place orders are executed. Implementations: ``paper`` (in the engine), ``mt5`` (the trader's PC)."""

    name: str
    #: Whether protective stops (stop-loss, take-profit) can be placed at the venue with an order.
    supports_protective_stops: bool

    async def submit(self, order: VenueOrder) -> None:
        """Hand ``order`` to the venue. Returns once the venue has it (its acceptance is a report).

        Raises ``VenueUnreachable`` (it does not have it) or ``VenueTimeout`` (unknown). Submitting
        a ``client_order_id`` the venue already has changes nothing there (no second order).
        """
        ...

    async def cancel(self, account_id: str, client_order_id: str) -> None:
        """Ask the venue to cancel; the outcome is a report (``canceled``, or a fill that won the race)."""
        ...

    async def order_status(self, account_id: str, client_order_id: str) -> VenueOrderStatus:
        """What the venue knows of one order (``not_found`` if it never got it)."""
        ...

    async def open_orders(self, account_id: str) -> list[VenueOrderStatus]:
        """Every order the venue holds open for the account, including ones the engine never sent."""
        ...

    async def positions(self, account_id: str) -> list[VenuePosition]:
        """The venue's net positions of the account, including ones opened outside the platform."""
        ...

    async def fills_since(self, account_id: str, since_ns: int) -> list[VenueReport]:
        """Every fill of the account executed at or after ``since_ns`` (``fill`` reports)."""
        ...
