"""The wire between trading-engine's MT5 venue and metatrader-connector's venue link.

The trader's PC sits behind NAT, so the link is opened from the client side, through the
gateway, with the connector's own OAuth2 client (scope ``venue``):

* ``GET  /api/v1/venues/mt5/commands?account=A&wait_s=8``: a long poll; answers the commands
  queued for the connector's accounts (``Mt5Command``) as soon as there are some;
* ``POST /api/v1/venues/mt5/reports``: what the terminal did (``Mt5Reports``), at least once;
* ``PUT  /api/v1/venues/mt5/snapshot``: the terminal's open orders, positions and recent deals
  (``Mt5Snapshot``), for reconciliation, periodically and after every command.

An order is found at the terminal by its ``comment`` (``mt5_comment(client_order_id)``) and the
platform's ``magic`` number: that is how a command whose answer was lost (the connector killed
mid ``order_send``, the link down) is matched later instead of being sent twice.
"""

from __future__ import annotations

import hashlib
import uuid
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events import ExternalId, OrderType, Side, Symbol, TimeInForce

#: MT5's ``magic`` of every order the platform sends (an expert advisor's id, as MT5 calls it).
PLATFORM_MAGIC = 20_240_511
#: MT5 keeps at most 31 characters of an order's comment.
MT5_COMMENT_MAX = 31
#: The longest long poll the connector asks for: under the gateway's 10 s upstream read timeout.
MAX_WAIT_S = 8.0

Decimal8 = Annotated[Decimal, Field(max_digits=28, decimal_places=8, allow_inf_nan=False)]


def mt5_comment(client_order_id: str) -> str:
    """The comment an order carries at the terminal: its client order id, or a digest of a longer one."""
    if len(client_order_id) <= MT5_COMMENT_MAX:
        return client_order_id
    return "h:" + hashlib.sha256(client_order_id.encode()).hexdigest()[: MT5_COMMENT_MAX - 2]


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Mt5Order(_Wire):
    """An order to place (what ``VenueOrder`` says, on the wire)."""

    order_id: uuid.UUID
    client_order_id: ExternalId
    symbol: Symbol
    side: Side
    type: OrderType
    quantity: Decimal8
    time_in_force: TimeInForce
    limit_price: Decimal8 | None = None
    stop_price: Decimal8 | None = None
    stop_loss: Decimal8 | None = None
    take_profit: Decimal8 | None = None


class Mt5Command(_Wire):
    """One thing for the terminal to do. ``submit`` carries ``order``; ``cancel`` names the order."""

    command_id: uuid.UUID
    kind: Literal["submit", "cancel"]
    account_id: ExternalId
    client_order_id: ExternalId
    order: Mt5Order | None = None
    #: How many times it was handed out (> 1: the connector may have acted on it already).
    attempt: int = 1


class Mt5Fill(_Wire):
    deal_ticket: ExternalId
    quantity: Decimal8
    price: Decimal8
    commission: Decimal8
    time_ns: int


class Mt5Report(_Wire):
    """Something the terminal did to one order (as ``VenueReport``)."""

    kind: Literal["accepted", "rejected", "fill", "canceled", "expired"]
    client_order_id: ExternalId
    time_ns: int
    venue_order_id: ExternalId | None = None
    fill: Mt5Fill | None = None
    reason_code: Annotated[str, Field(max_length=48)] | None = None
    reason: Annotated[str, Field(max_length=500)] | None = None


class Mt5Reports(_Wire):
    account_id: ExternalId
    reports: Annotated[list[Mt5Report], Field(max_length=1000)]
    #: The command these answer, if any (it is done once its order is accepted or rejected).
    command_id: uuid.UUID | None = None


class Mt5OrderView(_Wire):
    """An order as the terminal holds it (open or in its history)."""

    ticket: ExternalId
    comment: Annotated[str, Field(max_length=64)]
    magic: int
    symbol: Symbol
    side: Side
    state: Literal["accepted", "partially_filled", "filled", "canceled", "rejected", "expired"]
    volume_initial: Decimal8
    volume_current: Decimal8


class Mt5PositionView(_Wire):
    ticket: ExternalId
    symbol: Symbol
    #: Signed lots: > 0 long, < 0 short.
    quantity: Decimal8
    price_open: Decimal8
    comment: Annotated[str, Field(max_length=64)] = ""
    magic: int = 0


class Mt5DealView(_Wire):
    ticket: ExternalId
    order_ticket: ExternalId
    comment: Annotated[str, Field(max_length=64)]
    magic: int
    symbol: Symbol
    side: Side
    quantity: Decimal8
    price: Decimal8
    commission: Decimal8
    time_ns: int


class Mt5Snapshot(_Wire):
    """The terminal's state for one account at ``taken_at_ns`` (its own clock)."""

    account_id: ExternalId
    taken_at_ns: int
    orders: Annotated[list[Mt5OrderView], Field(max_length=10_000)]
    positions: Annotated[list[Mt5PositionView], Field(max_length=10_000)]
    deals: Annotated[list[Mt5DealView], Field(max_length=10_000)]
