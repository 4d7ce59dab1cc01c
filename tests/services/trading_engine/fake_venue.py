"""A small venue for the engine's tests, implementing ``Venue`` faithfully (the paper venue is built
elsewhere): it keeps its orders by client order id, never takes one twice, reports through the sink,
and loses answers on demand.

``mode`` decides what the next submits do:

* ``accept``: the order rests (``accepted`` reported);
* ``fill``: accepted and filled at once at its limit price or ``price`` (``accepted`` and ``fill``);
* ``unreachable``: raises ``VenueUnreachable`` and keeps nothing;
* ``lost_answer``: takes (and fills, if ``fill_on_lost``) the order, reports nothing, raises ``VenueTimeout``;
* ``never_arrived``: keeps nothing, raises ``VenueTimeout``;
* ``hang``: takes the order, then never answers;
* ``die_before`` / ``die_after``: the engine's process dies (``ProcessDied``, which no handler
  catches) before the venue got the order, or after it took (and filled) it.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from decimal import Decimal

from services.trading_engine.venues.base import (
    ReportSink,
    VenueFill,
    VenueOrder,
    VenueOrderState,
    VenueOrderStatus,
    VenuePosition,
    VenueReport,
    VenueTimeout,
    VenueUnreachable,
)

_ids = itertools.count(1)


class ProcessDied(BaseException):
    """Stands for a kill -9 of the engine in the middle of a submit: nothing after it runs."""


@dataclass
class Held:
    order: VenueOrder
    venue_order_id: str
    state: VenueOrderState = "accepted"
    fills: list[VenueFill] = field(default_factory=list)

    @property
    def filled(self) -> Decimal:
        return sum((f.quantity for f in self.fills), Decimal(0))


class FakeVenue:
    name = "paper"
    supports_protective_stops = False

    def __init__(self, sink: ReportSink) -> None:
        self.sink = sink
        self.mode = "accept"
        self.fill_on_lost = True
        self.price = Decimal("1.10000")
        self.commission_per_lot = Decimal("7")
        self.held: dict[tuple[str, str], Held] = {}
        self.submits = 0
        self.cancel_unreachable = False

    async def submit(self, order: VenueOrder) -> None:
        self.submits += 1
        if self.mode == "die_before":
            raise ProcessDied
        if self.mode in ("unreachable", "never_arrived"):
            if self.mode == "unreachable":
                raise VenueUnreachable("link down")
            raise VenueTimeout("no answer")
        key = (order.account_id, order.client_order_id)
        if key in self.held:
            return  # the same client order id again: no second order
        held = self.held[key] = Held(order, f"V{next(_ids)}")
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "die_after":
            self._fill(held, order.quantity)
            raise ProcessDied
        if self.mode == "lost_answer":
            if self.fill_on_lost:
                self._fill(held, order.quantity)
            raise VenueTimeout("answer lost")
        await self._report(held, "accepted")
        if self.mode == "fill":
            await self.fill(order.account_id, order.client_order_id, order.quantity)

    async def fill(
        self, account_id: str, client_order_id: str, quantity: Decimal, price: Decimal | None = None
    ) -> VenueFill:
        """Execute ``quantity`` of a held order (at ``price``, its limit price or the venue's price) and report it."""
        held = self.held[(account_id, client_order_id)]
        deal = self._fill(held, quantity, price)
        await self._report(held, "fill", fill=deal)
        return deal

    def _fill(self, held: Held, quantity: Decimal, price: Decimal | None = None) -> VenueFill:
        price = price or held.order.limit_price or self.price
        deal = VenueFill(
            f"D{next(_ids)}", quantity, price, self.commission_per_lot * quantity, 1_700_000_000_000_000_000
        )
        held.fills.append(deal)
        held.state = "filled" if held.filled >= held.order.quantity else "partially_filled"
        return deal

    async def _report(self, held: Held, kind: str, **extra: object) -> None:
        report = VenueReport(
            kind=kind,  # type: ignore[arg-type]
            account_id=held.order.account_id,
            client_order_id=held.order.client_order_id,
            ts_ns=1_700_000_000_000_000_000,
            venue_order_id=held.venue_order_id,
            **extra,  # type: ignore[arg-type]
        )
        await self.sink(report)

    async def end(self, account_id: str, client_order_id: str, kind: str, reason_code: str) -> None:
        """The venue ends a held order on its own (``expired`` at the session's end, ``rejected``)."""
        held = self.held[(account_id, client_order_id)]
        held.state = kind  # type: ignore[assignment]
        await self._report(held, kind, reason_code=reason_code)

    async def cancel(self, account_id: str, client_order_id: str) -> None:
        if self.cancel_unreachable:
            raise VenueUnreachable("link down")
        held = self.held.get((account_id, client_order_id))
        if held is None or held.state not in ("accepted", "partially_filled"):
            return
        held.state = "canceled"
        await self._report(held, "canceled", reason_code="canceled_by_request")

    async def order_status(self, account_id: str, client_order_id: str) -> VenueOrderStatus:
        if self.mode == "unreachable":
            raise VenueUnreachable("link down")
        held = self.held.get((account_id, client_order_id))
        if held is None:
            return VenueOrderStatus(client_order_id, "not_found")
        return VenueOrderStatus(
            client_order_id,
            held.state,
            held.venue_order_id,
            held.filled,
            tuple(held.fills),
        )

    async def open_orders(self, account_id: str) -> list[VenueOrderStatus]:
        return [
            await self.order_status(a, c)
            for (a, c), h in self.held.items()
            if a == account_id and h.state in ("accepted", "partially_filled")
        ]

    async def positions(self, account_id: str) -> list[VenuePosition]:
        net: dict[str, Decimal] = {}
        for (a, _), h in self.held.items():
            if a == account_id:
                sign = 1 if h.order.side == "buy" else -1
                net[h.order.symbol] = net.get(h.order.symbol, Decimal(0)) + sign * h.filled
        return [VenuePosition(account_id, s, q, self.price) for s, q in net.items() if q]

    async def fills_since(self, account_id: str, since_ns: int) -> list[VenueReport]:
        return [
            VenueReport("fill", account_id, c, f.ts_ns, h.venue_order_id, fill=f)
            for (a, c), h in self.held.items()
            if a == account_id
            for f in h.fills
            if f.ts_ns >= since_ns
        ]
