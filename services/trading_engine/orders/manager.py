"""OrderManager: places orders, moves them on the venue's reports, reconciles them with the venue.

Transaction boundaries (each ``T`` commits atomically with its outbox rows; once it committed they
are handed to the outbox's delivery task, so no request waits for the broker, and the sweep
publishes whatever that did not):

``place(request)``
  validation (no database) ->
  **T1**: lock the account; record the idempotency key; store the order ``new`` (v1); run the
  pre-trade checks; reserve the money; move it to ``pending_submit`` (v2), or to ``rejected``
  (v2) when a check, the reservation or the venue's absence refuses it ->
  ``venue.submit`` (no transaction is open while the venue is called) ->
  **T2** only on failure: ``VenueUnreachable`` -> ``rejected`` ``venue_unreachable`` (the interface
  guarantees nothing happened at the venue) and the reservation released; ``VenueTimeout`` (or any
  other error) -> ``unknown``: the order is never dropped, reconciliation finds out.

``on_report(report)`` (the venue's sink) and every step of a reconciliation
  **T**: lock the account, then the order (always in this order: no deadlocks); apply the report
  if it changes anything (a state the machine allows, a fill whose id is not stored yet): the
  fill row, the position, the balance (realised PnL minus commission), the reservation (released
  or cut to the unfilled share), the new order version, and their events.

What happens if the process dies ...

1. before T1 commits: nothing was stored; the caller's retry (same Idempotency-Key) places it anew.
2. after T1, before ``venue.submit``: the order is ``pending_submit`` with its reservation, the
   venue never had it. Reconciliation (at start, then every ``reconcile_interval_s``) asks the
   venue: ``not_found`` older than ``never_reached_grace_s`` -> ``rejected`` ``never_reached_venue``,
   reservation released. Never submitted late: a stale market order is worse than none.
3. during ``venue.submit`` or before its reports are applied: the venue has the order;
   reconciliation finds it by its client order id and applies its state and every fill.
4. inside an ``on_report`` T: rolled back; the venue delivers the report again (at least once)
   or reconciliation reads it from ``order_status``.
5. after a T commits, before its events are published: the outbox rows stay; the sweep
   publishes them (same event ids: consumers deduplicate).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

import asyncpg

from services.trading_engine.balance import Account, BalanceManager, account_of
from services.trading_engine.drift import position_drift
from services.trading_engine.orders import idempotency, repository
from services.trading_engine.orders.models import PRICE_EXPONENT, Order, OrderRequest
from services.trading_engine.orders.pretrade import AcceptAll, PreTradeCheck, PreTradeContext, Rejection
from services.trading_engine.orders.states import OPEN, TERMINAL, check_transition, is_legal
from services.trading_engine.prices import PriceSource
from services.trading_engine.venues.base import (
    Venue,
    VenueOrder,
    VenueOrderStatus,
    VenueReport,
    VenueTimeout,
    VenueUnreachable,
)
from shared.events import Event, Fill, OrderAttribution, OrderState, OrderUpdated, fill_event_id, now_ns
from shared.instruments import Instrument, instrument
from shared.outbox import Outbox

log = logging.getLogger(__name__)

#: The prices each order type needs (market: none).
NEEDS_LIMIT = frozenset({"limit", "stop_limit"})
NEEDS_STOP = frozenset({"stop", "stop_limit"})
#: Report kinds that end an order, and the state each leads to.
_REPORT_STATES: Mapping[str, OrderState] = {
    "accepted": "accepted",
    "rejected": "rejected",
    "canceled": "canceled",
    "expired": "expired",
}


class InvalidOrder(Exception):
    """The request cannot be an order; ``field`` names what is wrong (a 422 at the edge)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class NotFound(Exception):
    """No such order or account in the caller's tenant (a 404 at the edge, whoever owns it)."""


class OrderConflict(Exception):
    """The request conflicts with what exists (a terminal order to cancel, a client order id taken)."""


class VenueUnavailable(Exception):
    """The venue cannot be reached for a command that must reach it (a cancel)."""


def validate(request: OrderRequest) -> Instrument:
    """The request's instrument, or ``InvalidOrder`` naming the field at fault."""
    traded = instrument(request.symbol)
    if traded is None:
        raise InvalidOrder("symbol", f"{request.symbol} is not a traded symbol")
    if error := traded.volume_error(request.quantity):
        raise InvalidOrder("quantity", error)
    for name, needed in (("limit_price", NEEDS_LIMIT), ("stop_price", NEEDS_STOP)):
        given = getattr(request, name) is not None
        if request.type in needed and not given:
            raise InvalidOrder(name, f"a {request.type} order needs a {name}")
        if request.type not in needed and given:
            raise InvalidOrder(name, f"a {request.type} order takes no {name}")
    for name in ("limit_price", "stop_price", "stop_loss", "take_profit"):
        price = getattr(request, name)
        if price is not None and price % traded.point:
            raise InvalidOrder(name, f"{price} is not a multiple of the tick size {traded.point}")
    return traded


class OrderManager:
    """Owns the orders of every account; one ``Venue`` per venue name (``paper``, ``mt5``)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        outbox: Outbox,
        balances: BalanceManager,
        venues: Mapping[str, Venue],
        prices: PriceSource,
        *,
        checks: Sequence[PreTradeCheck] = (AcceptAll(),),
        never_reached_grace_s: float = 30.0,
        submit_timeout_s: float = 10.0,
        clock: Callable[[], int] = now_ns,
    ) -> None:
        self.pool = pool
        self.outbox = outbox
        self.balances = balances
        self.venues = dict(venues)
        self.prices = prices
        self.checks = list(checks)
        self.never_reached_grace_ns = int(never_reached_grace_s * 1e9)
        self.submit_timeout_s = submit_timeout_s
        self.clock = clock
        #: Orders being submitted by ``_submit``, and their last version committed since (``None``: none
        #: yet): what the submit answers, without reading the order back.
        self._submitting: dict[uuid.UUID, OrderUpdated | None] = {}

    @contextlib.asynccontextmanager
    async def _change(self) -> AsyncIterator[tuple[asyncpg.Connection, list[Event]]]:
        """A transaction and the events of its changes: recorded in the outbox within it, and handed to
        the delivery task the moment it commits, before the connection goes back to the pool (no await
        in between, so the versions of one order reach the bus in the order they were committed)."""
        events: list[Event] = []
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                yield conn, events
                await self.outbox.record(conn, events)
            self.outbox.deliver_soon(events)
            for event in events:
                if isinstance(event, OrderUpdated) and event.order_id in self._submitting:
                    self._submitting[event.order_id] = event

    # -- placing --------------------------------------------------------------------------------

    async def place(
        self,
        request: OrderRequest,
        *,
        tenant: str,
        actor: str,
        attribution: OrderAttribution | None = None,
        idempotency_key: str | None = None,
    ) -> Order | idempotency.Replay:
        """Store, check, reserve and submit an order (see the module docstring); returns it as it
        stands after the submit, or the ``Replay`` of an earlier request with the same key."""
        traded = validate(request)
        async with self._change() as (conn, events):
            account = await self.balances.lock(conn, request.account_id, tenant)
            if account is None:
                raise NotFound(f"no account {request.account_id}")
            order = self._new_order(request, account, actor, attribution or OrderAttribution())
            if idempotency_key is not None:
                fingerprint = idempotency.request_hash(request)
                earlier = await idempotency.claim(conn, tenant, idempotency_key, fingerprint, order.id)
                if earlier is not None:
                    return earlier
            if traded.currency_profit != account.currency:
                raise InvalidOrder(
                    "symbol", f"{request.symbol} settles in {traded.currency_profit}, not {account.currency}"
                )
            if not await repository.insert_order(conn, order):
                raise OrderConflict(f"client_order_id {order.client_order_id} is already used in this account")
            events.append(order.event(None, self.clock()))
            rejection = await self._judge(conn, order, account, traded)
            if rejection is None:
                order = await self._move(conn, order, "pending_submit", events, submitted_ns=self.clock())
            else:
                order = await self._move(
                    conn, order, "rejected", events, reason_code=rejection.reason_code, reason=rejection.reason
                )
        if order.state == "pending_submit":
            return await self._submit(order)
        return order

    def _new_order(self, request: OrderRequest, account: Account, actor: str, attribution: OrderAttribution) -> Order:
        return Order(
            id=uuid.uuid4(),
            tenant=account.tenant,
            account_id=account.id,
            venue=account.venue,
            client_order_id=request.client_order_id or uuid.uuid4().hex,
            symbol=request.symbol,
            side=request.side,
            type=request.type,
            quantity=request.quantity,
            limit_price=request.limit_price,
            stop_price=request.stop_price,
            time_in_force=request.time_in_force,
            stop_loss=request.stop_loss,
            take_profit=request.take_profit,
            state="new",
            version=1,
            filled_quantity=Decimal(0),
            average_fill_price=None,
            venue_order_id=None,
            reason_code=None,
            reason=None,
            attribution=attribution,
            actor=actor[:128],
        )

    async def _judge(
        self, conn: asyncpg.Connection, order: Order, account: Account, traded: Instrument
    ) -> Rejection | None:
        """The pre-trade seam, then the reservation: why the order may not go on, or ``None``
        (its money then reserved)."""
        if account.venue not in self.venues:
            return Rejection("venue_unavailable", f"the {account.venue} venue is not configured on this engine")
        last = self.prices.last_price(order.symbol)
        price = order.limit_price or order.stop_price or last
        if price is None:
            return Rejection("no_reference_price", f"no price of {order.symbol} is known yet to reserve against")
        funds = await self.balances.funds(conn, account)
        context = PreTradeContext(account, funds, traded, price, last, self.clock(), conn)
        for check in self.checks:
            if (rejection := await check.check(order, context)) is not None:
                return rejection
        amount = self.balances.requirement(account, traded, order.quantity, price)
        if not await self.balances.reserve(conn, account, order.id, amount, funds):
            return Rejection(
                "insufficient_funds",
                f"the order needs {amount:.2f} {account.currency}, {funds.available:.2f} available",
            )
        return None

    async def _submit(self, order: Order) -> Order:
        venue = self.venues[order.venue]
        self._submitting[order.id] = None
        try:
            await self._submit_to(venue, order)
        finally:
            latest = self._submitting.pop(order.id)
        # Every change of the order goes through ``_change`` in this process (the venue's reports, the
        # settling below), which noted the last one committed: the order as it stands now. Only a
        # reason the event had to cut (500 characters) is read back whole.
        if latest is None:
            return order
        if latest.reason is not None and len(latest.reason) >= 500:
            async with self.pool.acquire() as conn:
                current = await repository.order_by_id(conn, order.tenant, order.id)
            assert current is not None
            return current
        return _as_of(order, latest)

    async def _submit_to(self, venue: Venue, order: Order) -> None:
        try:
            # A venue that does not answer in time is a lost answer: the order becomes unknown.
            async with asyncio.timeout(self.submit_timeout_s):
                await venue.submit(_venue_order(order))
        except TimeoutError:
            await self._settle(order, "unknown", "venue_timeout", f"no answer in {self.submit_timeout_s} s")
        except VenueUnreachable as exc:
            # The interface's promise: nothing happened at the venue. Safe to end the order here.
            await self._settle(order, "rejected", "venue_unreachable", str(exc) or "the venue was not reached")
        except VenueTimeout as exc:
            await self._settle(order, "unknown", "venue_timeout", str(exc) or "the venue's answer was lost")
        except Exception as exc:  # a bug in a venue must not lose the order either
            log.exception("submitting order %s failed", order.id)
            await self._settle(order, "unknown", "venue_error", repr(exc)[:500])

    async def _settle(self, order: Order, target: OrderState, reason_code: str, reason: str) -> None:
        """Move a just-submitted order out of ``pending_submit`` unless a report already did."""
        async with self._change() as (conn, events):
            await self.balances.lock(conn, order.account_id)
            current = await repository.order_by_id(conn, order.tenant, order.id, lock=True)
            if current is None or current.state != "pending_submit":
                return
            await self._move(conn, current, target, events, reason_code=reason_code, reason=reason)
            if target in TERMINAL:
                await self.balances.release(conn, order.id)

    async def _move(
        self, conn: asyncpg.Connection, order: Order, target: OrderState, events: list[Event], **changes: Any
    ) -> Order:
        check_transition(order.state, target)
        if order.state == "unknown" and "reason_code" not in changes:
            # The lost answer is found: the order's reason is no longer "venue_timeout".
            changes.update(reason_code=None, reason=None)
        moved = order.moved(target, **changes)
        await repository.save_transition(conn, moved, order.state)
        events.append(moved.event(order.state, self.clock()))
        return moved

    # -- canceling ------------------------------------------------------------------------------

    async def cancel(self, tenant: str, order_id: uuid.UUID) -> Order:
        """Ask the venue to cancel; the outcome arrives as a report. A lost answer leaves the order to
        the reconciliation (it is open, so it is reconciled)."""
        async with self.pool.acquire() as conn:
            order = await repository.order_by_id(conn, tenant, order_id)
        if order is None:
            raise NotFound(f"no order {order_id}")
        if order.state in TERMINAL:
            raise OrderConflict(f"order {order_id} is {order.state}: there is nothing to cancel")
        venue = self.venues.get(order.venue)
        if venue is None:
            raise VenueUnavailable(f"the {order.venue} venue is not configured on this engine")
        try:
            async with asyncio.timeout(self.submit_timeout_s):
                await venue.cancel(order.account_id, order.client_order_id)
        except VenueUnreachable as exc:
            raise VenueUnavailable(f"the {order.venue} venue cannot be reached: {exc}") from exc
        except (VenueTimeout, TimeoutError):
            log.warning("cancel of order %s: the venue's answer was lost; reconciliation settles it", order_id)
        async with self.pool.acquire() as conn:
            current = await repository.order_by_id(conn, tenant, order_id)
        assert current is not None
        return current

    async def cancel_open(
        self,
        *,
        tenant: str | None = None,
        account_id: str | None = None,
        venue: str | None = None,
        strategy: str | None = None,
    ) -> int:
        """Ask the venues to cancel every open order in scope (the kill switch's sweep; all filters
        given must match, none = every open order); returns how many cancels were sent. Orders whose
        venue cannot be reached now stay open and are reported in the log."""
        async with self.pool.acquire() as conn:
            orders = await repository.orders_in(conn, sorted(OPEN), limit=None)
        sent = 0
        for order in orders:
            if tenant is not None and order.tenant != tenant:
                continue
            if account_id is not None and order.account_id != account_id:
                continue
            if venue is not None and order.venue != venue:
                continue
            if strategy is not None and order.attribution.strategy != strategy:
                continue
            try:
                await self.cancel(order.tenant, order.id)
                sent += 1
            except (VenueUnavailable, OrderConflict, NotFound) as exc:
                log.warning("could not cancel order %s: %s", order.id, exc)
        return sent

    # -- reports --------------------------------------------------------------------------------

    async def on_report(self, report: VenueReport) -> bool:
        """Apply one report of a venue (the ``ReportSink``); ``True`` if it changed anything.
        Idempotent: a report already applied, or one the state machine has moved past, changes nothing."""
        async with self._change() as (conn, events):
            row, order = await repository.lock_for_report(conn, report.account_id, report.client_order_id)
            account = None if row is None else account_of(row)
            if account is None or order is None:
                log.warning(
                    "a %s report about %s/%s, an order this engine does not hold",
                    report.kind,
                    report.account_id,
                    report.client_order_id,
                )
                return False
            if report.kind == "fill":
                await self._apply_fill(conn, account, order, report, events)
            else:
                await self._apply_state(conn, order, report, events)
        return bool(events)

    async def _apply_state(
        self, conn: asyncpg.Connection, order: Order, report: VenueReport, events: list[Event]
    ) -> None:
        target = _REPORT_STATES[report.kind]
        if order.state == target or not is_legal(order.state, target):
            if order.state != target and not (target == "accepted" and order.state in ("partially_filled", "filled")):
                log.warning("order %s is %s: a late %s report changes nothing", order.id, order.state, report.kind)
            return
        changes: dict[str, Any] = {"venue_order_id": report.venue_order_id or order.venue_order_id}
        if target in TERMINAL:
            changes.update(reason_code=report.reason_code or target, reason=report.reason)
            await self.balances.release(conn, order.id)
        await self._move(conn, order, target, events, **changes)

    async def _apply_fill(
        self, conn: asyncpg.Connection, account: Account, order: Order, report: VenueReport, events: list[Event]
    ) -> None:
        deal = report.fill
        if deal is None:
            log.warning("a fill report without a fill for order %s", order.id)
            return
        fill_id = fill_event_id(order.venue, order.account_id, deal.venue_fill_id)
        if await repository.fill_exists(conn, fill_id):
            return  # the same deal again (a retry, a reconciliation)
        traded = instrument(order.symbol)
        assert traded is not None  # validated when the order was placed
        # The events carry 8 decimal places; a venue's finer figures are rounded once, here.
        price, commission = deal.price.quantize(PRICE_EXPONENT), deal.commission.quantize(PRICE_EXPONENT)
        realized = await self.balances.book_fill(conn, account, traded, order.side, deal.quantity, price, commission)
        fill = Fill(
            event_id=fill_id,
            ts_event=deal.ts_ns,
            ts_init=self.clock(),
            order_id=order.id,
            client_order_id=order.client_order_id,
            tenant=order.tenant,
            account_id=order.account_id,
            venue=order.venue,  # type: ignore[arg-type]
            venue_fill_id=deal.venue_fill_id,
            symbol=order.symbol,
            side=order.side,
            quantity=deal.quantity,
            price=price,
            commission=commission,
            currency=account.currency,
            attribution=order.attribution,
        )
        await repository.insert_fill(conn, fill, realized)
        events.append(fill)
        if order.state in TERMINAL:
            # Money moved at the venue: booked above; the order's state has nowhere to go.
            log.error("order %s is %s but the venue reports a fill %s", order.id, order.state, deal.venue_fill_id)
            return
        filled = order.filled_quantity + deal.quantity
        if filled > order.quantity:
            log.error("order %s is filled beyond its quantity (%s of %s)", order.id, filled, order.quantity)
        previous_value = (order.average_fill_price or Decimal(0)) * order.filled_quantity
        average = ((previous_value + price * deal.quantity) / filled).quantize(PRICE_EXPONENT)
        target: OrderState = "filled" if filled >= order.quantity else "partially_filled"
        if target == "filled":
            await self.balances.release(conn, order.id)
        else:
            await self.balances.keep_share(conn, order.id, order.quantity - filled, order.remaining)
        await self._move(
            conn,
            order,
            target,
            events,
            filled_quantity=filled,
            average_fill_price=average,
            venue_order_id=report.venue_order_id or order.venue_order_id,
        )

    # -- reconciliation -------------------------------------------------------------------------

    async def reconcile(self) -> int:
        """Align every open order (``pending_submit``, ``accepted``, ``partially_filled``, ``unknown``)
        with its venue's truth; returns how many changed. A venue that cannot answer now is asked again
        next round."""
        async with self.pool.acquire() as conn:
            orders = await repository.orders_in(conn, sorted(OPEN))
        changed = 0
        for order in orders:
            venue = self.venues.get(order.venue)
            if venue is None:
                continue
            try:
                status = await venue.order_status(order.account_id, order.client_order_id)
            except (VenueUnreachable, VenueTimeout):
                log.info("order %s: the %s venue did not answer; next round", order.id, order.venue)
                continue
            changed += await self._align(order, status)
        return changed

    async def _align(self, order: Order, status: VenueOrderStatus) -> int:
        """Apply what the venue says of one order, as the reports it would have sent."""
        changed = 0
        for report in self._reports_of(order, status):
            changed += await self.on_report(report)
        return changed

    def _reports_of(self, order: Order, status: VenueOrderStatus) -> list[VenueReport]:
        now = self.clock()

        def report(kind: str, **extra: Any) -> VenueReport:
            return VenueReport(
                kind=kind,  # type: ignore[arg-type]
                account_id=order.account_id,
                client_order_id=order.client_order_id,
                ts_ns=now,
                venue_order_id=status.venue_order_id,
                **extra,
            )

        if status.state == "not_found":
            age = now - (order.submitted_ns or now)
            if order.state in ("pending_submit", "unknown") and age >= self.never_reached_grace_ns:
                return [
                    report("rejected", reason_code="never_reached_venue", reason="the venue never received the order")
                ]
            if order.state in ("accepted", "partially_filled"):
                log.error("order %s is %s here but unknown to the %s venue", order.id, order.state, order.venue)
            return []
        reports = []
        if status.state != "rejected":
            reports.append(report("accepted"))
        reports += [report("fill", fill=deal) for deal in status.fills]
        if status.state in ("canceled", "expired", "rejected"):
            reports.append(report(status.state, reason_code=status.reason_code, reason=status.reason))
        if status.state == "filled" and sum((f.quantity for f in status.fills), Decimal(0)) < order.quantity:
            log.error("the venue says order %s is filled but lists fills for less", order.id)
        return reports

    async def run_reconciliation(self, interval_s: float) -> None:
        """Reconcile now, then every ``interval_s`` (cancel to stop); positions that still differ from
        the venue's afterwards are logged (``drift.position_drift``)."""
        while True:
            try:
                if changed := await self.reconcile():
                    log.info("reconciliation moved %d order(s) to their venue's truth", changed)
                for drift in await position_drift(self.pool, self.venues):
                    log.warning(
                        "position drift: %s %s is %s here, %s at the venue",
                        drift.account_id,
                        drift.symbol,
                        drift.engine,
                        drift.venue,
                    )
            except Exception:
                log.warning("reconciliation failed; retrying in %.1f s", interval_s, exc_info=True)
            await asyncio.sleep(interval_s)


def _as_of(order: Order, update: OrderUpdated) -> Order:
    """``order`` at the version ``update`` describes (its state, progress and reason)."""
    return replace(
        order,
        state=update.state,
        version=update.version,
        filled_quantity=update.filled_quantity,
        average_fill_price=update.average_fill_price,
        venue_order_id=update.venue_order_id,
        reason_code=update.reason_code,
        reason=update.reason,
    )


def _venue_order(order: Order) -> VenueOrder:
    return VenueOrder(
        order_id=order.id,
        client_order_id=order.client_order_id,
        account_id=order.account_id,
        symbol=order.symbol,
        side=order.side,
        type=order.type,
        quantity=order.quantity,
        time_in_force=order.time_in_force,
        limit_price=order.limit_price,
        stop_price=order.stop_price,
        stop_loss=order.stop_loss,
        take_profit=order.take_profit,
    )
