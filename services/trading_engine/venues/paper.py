"""The paper venue: a simulated venue inside trading-engine, with its own persistent truth.

It holds its orders, deals and netting positions per account in ``trading.paper_*`` (migration
040), apart from the engine's records, so reconciling the engine against it means something and
a restart loses nothing: resting orders are rows, and a new ``PaperVenue`` on the same tables keeps
working them on the next ticks.

* ``submit`` stores the order (unique per account and client order id: a second submit of the same
  id changes nothing) and owes an ``accepted`` report, or ``rejected`` for a symbol without an
  instrument, a volume the instrument refuses or a missing price.
* ``on_tick(symbol, bid, ask, time_ns)`` is fed every market tick by the engine (the venue reads no
  topic itself). An order executes only on ticks at or after its submit time plus ``latency_ms``:
  the next tick, never the quote it was priced on. The execution rules (spread, slippage, partial
  fills, commission, times in force) are ``paper_rules``'.
* ``expire_due()``: day orders also expire by the injected clock, for symbols whose market closed
  (no tick comes to expire them); the engine calls it periodically.
* Each fill, its deal, the order's progress, the position change and the reports it owes commit in
  one transaction; reports are delivered to the sink after the commit, in order, at least once:
  a report the sink raised on stays owed (later reports of the same order wait behind it) and is
  delivered again by the next delivery pass (any later command or tick, or ``deliver_pending()``,
  which the engine also calls once on start for what a dead process owed). One pass runs at a
  time: a command issued while a pass runs (concurrently, or by the sink itself) returns without
  waiting, and the running pass delivers its reports too. The reconciliation queries read the
  tables, so they tell the whole truth even when a report never arrived.
* Simulated faults for the engine's tests: ``fail_next_submits("timeout")`` stores the order and then
  raises ``VenueTimeout`` (the answer lost: its ``accepted`` report stays owed until the next delivery
  pass); ``fail_next_submits("unreachable")`` raises ``VenueUnreachable`` and stores nothing.
* ``supports_protective_stops`` is ``False``: the engine holds stop-loss and take-profit itself and
  closes the position with a market order; the paper venue stores an order's ``stop_loss`` and
  ``take_profit`` but does not act on them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from services.trading_engine.venues import paper_rules as rules
from services.trading_engine.venues import paper_store as store
from services.trading_engine.venues.base import (
    ReportSink,
    VenueFill,
    VenueOrder,
    VenueOrderStatus,
    VenuePosition,
    VenueReport,
    VenueTimeout,
    VenueUnreachable,
)
from shared.instruments import Instrument, instrument

log = logging.getLogger(__name__)

SubmitFault = Literal["timeout", "unreachable"]
#: Reports read per query by a delivery pass.
_DELIVERY_BATCH = 500
_CANCEL_REASONS = {
    "ioc_remainder": "immediate-or-cancel: the rest of the order could not fill on its first tick",
    "ioc_not_marketable": "immediate-or-cancel: nothing could fill on its first tick",
    "fok_not_filled": "fill-or-kill: the whole quantity could not fill on its first tick",
}


class PaperVenueSettings(BaseModel):
    """How the paper venue executes (every figure >= 0; Decimal where it is money or a price)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Milliseconds between a submit and the first tick the order may execute on.
    latency_ms: Annotated[int, Field(ge=0, le=60_000)] = 0
    #: Points added to the tick's spread (half on each side), e.g. 10 = 1 pip on EURUSD.
    extra_spread_points: Annotated[Decimal, Field(ge=0, le=100_000)] = Decimal(0)
    #: Adverse slippage of market executions (market orders, triggered stops), in basis points.
    slippage_bps: Annotated[Decimal, Field(ge=0, le=1_000)] = Decimal(0)
    #: Commission per lot filled, in the account's currency.
    commission_per_lot: Annotated[Decimal, Field(ge=0)] = Decimal(0)
    #: Commission on each fill's notional, in basis points.
    commission_bps: Annotated[Decimal, Field(ge=0, le=1_000)] = Decimal(0)
    #: Share of the remaining quantity one tick fills (1 = all at once); at least one volume step.
    partial_fill_ratio: Annotated[Decimal, Field(gt=0, le=1)] = Decimal(1)
    #: UTC hour at which a day order's trading day rolls over (if its session did not close before).
    day_end_utc_hour: Annotated[int, Field(ge=0, le=23)] = 22

    def costs(self) -> rules.Costs:
        return rules.Costs(
            extra_spread_points=self.extra_spread_points,
            slippage_bps=self.slippage_bps,
            commission_per_lot=self.commission_per_lot,
            commission_bps=self.commission_bps,
            partial_fill_ratio=self.partial_fill_ratio,
        )


class PaperVenue:
    """The simulated venue (see the module's docstring). ``clock`` returns ns since the epoch, UTC."""

    name = "paper"
    supports_protective_stops = False

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: PaperVenueSettings,
        clock: Callable[[], int],
        sink: ReportSink,
        *,
        instruments: Callable[[str], Instrument | None] = instrument,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._costs = settings.costs()
        self._clock = clock
        self._sink = sink
        self._instruments = instruments
        self._faults: list[SubmitFault] = []
        self._symbol_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._delivering = False
        # A process that died may have left reports owed: the first pass looks.
        self._owed = True

    # -- commands ------------------------------------------------------------------------------

    def fail_next_submits(self, fault: SubmitFault, count: int = 1) -> None:
        """Make the next ``count`` submits fail: ``timeout`` after storing the order, ``unreachable``
        before (for the engine's tests of lost answers and outages)."""
        self._faults.extend([fault] * count)

    async def submit(self, order: VenueOrder) -> None:
        fault = self._faults.pop(0) if self._faults else None
        if fault == "unreachable":
            raise VenueUnreachable("paper venue: simulated outage, the order was not received")
        now = self._clock()
        facts = self._instruments(order.symbol)
        problem = self._problem(order, facts)
        state: Literal["accepted", "rejected"] = "accepted" if problem is None else "rejected"
        code, reason = problem or (None, None)
        expires = None
        if facts is not None and problem is None and order.time_in_force == "day":
            expires = rules.day_end_ns(facts.session, now, self._settings.day_end_utc_hour)
        async with self._pool.acquire() as conn, conn.transaction():
            pk = await store.insert_order(
                conn,
                order,
                state=state,
                submitted_ns=now,
                eligible_ns=now + self._settings.latency_ms * 1_000_000,
                expires_ns=expires,
                reason_code=code,
                reason=reason,
            )
            if pk is not None:  # None: the account has this client order id already, nothing changes
                key = (order.account_id, order.client_order_id, pk)
                await store.add_report(conn, key, state, now, reason_code=code, reason=reason)
        if pk is not None:
            self._owed = True
        if fault == "timeout":
            raise VenueTimeout("paper venue: simulated timeout, the order was stored but the answer lost")
        await self.deliver_pending()

    @staticmethod
    def _problem(order: VenueOrder, facts: Instrument | None) -> tuple[str, str] | None:
        """Why the venue refuses ``order`` (reason code, reason), or ``None``."""
        if facts is None:
            return "unknown_symbol", f"{order.symbol} is not traded at the paper venue"
        volume = facts.volume_error(order.quantity)
        if volume is not None:
            return "invalid_volume", volume
        if order.type in ("limit", "stop_limit") and not (order.limit_price and order.limit_price > 0):
            return "invalid_price", f"a {order.type} order needs a positive limit_price"
        if order.type in ("stop", "stop_limit") and not (order.stop_price and order.stop_price > 0):
            return "invalid_price", f"a {order.type} order needs a positive stop_price"
        return None

    async def cancel(self, account_id: str, client_order_id: str) -> None:
        now = self._clock()
        async with self._pool.acquire() as conn, conn.transaction():
            order = await store.lock_order(conn, account_id, client_order_id)
            if order is None or order.state not in ("accepted", "partially_filled"):
                return  # never received, or already done (a fill won the race): its reports say so
            reason = "canceled at the engine's request"
            await store.close_order(conn, order.pk, "canceled", "canceled_by_request", reason, now)
            await store.add_report(conn, order, "canceled", now, reason_code="canceled_by_request", reason=reason)
        self._owed = True
        await self.deliver_pending()

    # -- market data and time ------------------------------------------------------------------

    async def on_tick(self, symbol: str, bid: Decimal, ask: Decimal, time_ns: int) -> None:
        """Work the open orders of ``symbol`` against this tick (ticks of a symbol in time order)."""
        facts = self._instruments(symbol)
        if facts is None or bid <= 0 or ask < bid:
            return  # not a symbol of ours, or not a usable quote
        quote = rules.venue_quote(bid, ask, facts, self._costs)
        async with self._symbol_locks[symbol], self._pool.acquire() as conn, conn.transaction():
            changed = await self._expire(conn, time_ns, symbol)
            for order in await store.lock_eligible(conn, symbol, time_ns, quote.bid, quote.ask):
                changed = await self._work(conn, order, quote, facts, time_ns) or changed
        if changed:
            self._owed = True
            await self.deliver_pending()

    async def expire_due(self) -> None:
        """Expire every day order whose trading day ended by the clock (markets that closed send no ticks)."""
        async with self._pool.acquire() as conn, conn.transaction():
            changed = await self._expire(conn, self._clock(), None)
        if changed:
            self._owed = True
            await self.deliver_pending()

    async def _expire(self, conn: asyncpg.Connection, now_ns: int, symbol: str | None) -> bool:
        orders = await store.lock_expiring(conn, now_ns, symbol)
        reason = "the order's trading day ended"
        for order in orders:
            assert order.expires_ns is not None
            await store.close_order(conn, order.pk, "expired", "day_ended", reason, order.expires_ns)
            await store.add_report(conn, order, "expired", order.expires_ns, reason_code="day_ended", reason=reason)
        return bool(orders)

    async def _work(
        self, conn: asyncpg.Connection, order: store.OrderRow, quote: rules.Quote, facts: Instrument, time_ns: int
    ) -> bool:
        """Apply one tick to one order; whether it changed anything the engine hears of."""
        working = order.working
        action = rules.on_tick(working, quote, facts, self._costs)
        if action.quantity > 0:
            assert action.price is not None
            fill_no = order.fill_count + 1
            fill = VenueFill(
                venue_fill_id=store.venue_fill_id(order.pk, fill_no),
                quantity=action.quantity,
                price=action.price,
                commission=rules.commission(action.quantity, action.price, facts, self._costs),
                ts_ns=time_ns,
            )
            filled = working.filled_quantity + action.quantity
            await store.record_fill(
                conn, order, fill, fill_no, "filled" if filled == working.quantity else "partially_filled"
            )
            position = await store.lock_position(conn, order.account_id, order.symbol)
            position = rules.apply_fill(position, working.side, fill.quantity, fill.price, facts.contract_size)
            await store.save_position(conn, order.account_id, order.symbol, position, time_ns)
            await store.add_report(conn, order, "fill", time_ns, fill_id=fill.venue_fill_id)
        elif action.triggered and not working.triggered:
            await store.mark_triggered(conn, order.pk, time_ns)  # a stop-limit now resting as a limit
        if action.cancel_reason is not None:
            reason = _CANCEL_REASONS[action.cancel_reason]
            await store.close_order(conn, order.pk, "canceled", action.cancel_reason, reason, time_ns)
            await store.add_report(conn, order, "canceled", time_ns, reason_code=action.cancel_reason, reason=reason)
        return action.quantity > 0 or action.cancel_reason is not None

    # -- reports -------------------------------------------------------------------------------

    async def deliver_pending(self) -> int:
        """Deliver every owed report to the sink, oldest first; how many were delivered. A report the
        sink raised on stays owed, and so do the later reports of its order (order per order kept).

        One pass at a time: a call made while a pass runs (a concurrent command, or the sink itself
        calling the venue) returns at once, and the running pass picks up what it owes."""
        if self._delivering:
            return 0
        self._delivering = True
        try:
            total = 0
            while self._owed:
                self._owed = False
                delivered, blocked = await self._delivery_pass()
                total += delivered
                if blocked:
                    self._owed = True  # retried by the next call, not in a loop against a failing sink
                    break
            return total
        finally:
            self._delivering = False

    async def _delivery_pass(self) -> tuple[int, bool]:
        delivered, after, blocked = 0, 0, set[tuple[str, str]]()
        while True:
            batch = await store.pending_reports(self._pool, after, _DELIVERY_BATCH)
            done = []
            for seq, report in batch:
                after = seq
                key = (report.account_id, report.client_order_id)
                if key in blocked:
                    continue
                try:
                    await self._sink(report)
                except Exception:
                    log.exception("the report sink refused %s of %s; it stays owed", report.kind, key)
                    blocked.add(key)
                    continue
                done.append(seq)
            if done:
                await store.mark_delivered(self._pool, done)
            delivered += len(done)
            if len(batch) < _DELIVERY_BATCH:
                return delivered, bool(blocked)

    # -- reconciliation: read from the tables --------------------------------------------------

    async def order_status(self, account_id: str, client_order_id: str) -> VenueOrderStatus:
        return await store.order_status(self._pool, account_id, client_order_id)

    async def open_orders(self, account_id: str) -> list[VenueOrderStatus]:
        return await store.open_orders(self._pool, account_id)

    async def positions(self, account_id: str) -> list[VenuePosition]:
        return [
            VenuePosition(account_id, symbol, quantity, average)
            for symbol, quantity, average in await store.positions(self._pool, account_id)
        ]

    async def fills_since(self, account_id: str, since_ns: int) -> list[VenueReport]:
        return await store.fills_since(self._pool, account_id, since_ns)
