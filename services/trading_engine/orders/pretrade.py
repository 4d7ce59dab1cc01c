"""The pre-trade seam: the one place where checks run on an order before it may go to ``pending_submit``.

``OrderManager.place`` runs its ``checks`` in order, inside the transaction that stores the order,
with the account's row locked (so two orders of one account are judged one after the other and
each sees the other's reservation). The first ``Rejection`` wins: the order is stored ``rejected``
with the rejection's reason code and never reaches the venue.

The risk gate (``services/trading_engine/risk/``) and the kill switch's block are such checks:
the kill switch goes first (a tripped switch refuses before any other judgement is made). The
default is ``AcceptAll``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

import asyncpg

from services.trading_engine.balance import Account, Funds
from services.trading_engine.orders.models import Order
from shared.instruments import Instrument


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a check refused an order: a reason code (``^[a-z][a-z0-9_]*$``) and words for people."""

    reason_code: str
    reason: str


@dataclass(frozen=True, slots=True)
class PreTradeContext:
    """What a check may look at. ``conn`` is the placing transaction's connection (the account's
    row is locked on it): a check that needs more (positions, today's fills, limits) reads it there."""

    account: Account
    funds: Funds
    instrument: Instrument
    #: The order's price for the reservation: its limit or stop price, the last price for a market order.
    reference_price: Decimal
    #: The last traded price of the symbol, where known (for a price collar).
    last_price: Decimal | None
    now_ns: int
    conn: asyncpg.Connection


class PreTradeCheck(Protocol):
    async def check(self, order: Order, context: PreTradeContext) -> Rejection | None:
        """``None`` to let the order through, or why not."""
        ...


class AcceptAll:
    """The default check: lets every order through."""

    async def check(self, order: Order, context: PreTradeContext) -> Rejection | None:
        return None
