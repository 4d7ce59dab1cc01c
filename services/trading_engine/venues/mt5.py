"""The MT5 venue: orders travel to the trader's PC, where metatrader-connector calls ``order_send``.

The connector opens the link (the PC is behind NAT): it long-polls the commands queued here and
reports back what the terminal did (``shared/mt5_link.py`` is the wire). What this means for an
order (``Venue`` in ``base.py``):

* ``submit`` queues a command and waits up to ``submit_timeout_s`` for the connector to take it.
  Taken: the venue has it, its answer comes as reports. Not taken (the link is down): the order's
  fate is not known yet, ``VenueTimeout``, and the order is ``unknown``. The command stays queued:
  a connector that comes back within ``command_ttl_s`` executes it; after that it is withdrawn
  (atomically, so never both) and the order is rejected ``venue_unreachable``: it never reached the
  terminal, and a stale order must not execute minutes later.
* a command handed out but never answered (the connector died mid ``order_send``) is handed out
  again after ``redeliver_after_s``; the connector looks for the order at the terminal by its
  comment before sending it, so it is never placed twice.
* reconciliation reads the account's latest snapshot. While a command is outstanding, or the
  snapshot is older than ``snapshot_max_age_s``, the venue cannot say: ``VenueTimeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from services.trading_engine.venues.base import (
    ReportSink,
    VenueFill,
    VenueOrder,
    VenueOrderStatus,
    VenuePosition,
    VenueReport,
    VenueTimeout,
)
from services.trading_engine.venues.mt5_link_store import Mt5LinkStore
from shared.mt5_link import PLATFORM_MAGIC, Mt5Command, Mt5Order, Mt5Reports, Mt5Snapshot, mt5_comment

log = logging.getLogger(__name__)

#: Looks an account up: its tenant, if it is an MT5 account of the platform (``None`` otherwise).
Mt5AccountTenant = Callable[[str], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class Mt5VenueSettings:
    #: How long ``submit``/``cancel`` wait for the connector to take the command.
    submit_timeout_s: float = 5.0
    #: A command nobody took within this is withdrawn (the order is rejected ``venue_unreachable``).
    command_ttl_s: float = 60.0
    #: A command handed out without an answer within this is handed out again.
    redeliver_after_s: float = 15.0
    #: A snapshot older than this cannot answer reconciliation.
    snapshot_max_age_s: float = 30.0


class Mt5Venue:
    """``Venue`` over the connector's link (commands out, reports and snapshots in)."""

    name = "mt5"
    supports_protective_stops = True

    def __init__(
        self,
        store: Mt5LinkStore,
        sink: ReportSink,
        tenant_of: Mt5AccountTenant,
        settings: Mt5VenueSettings | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._store = store
        self._sink = sink
        self.tenant_of = tenant_of
        self.settings = settings or Mt5VenueSettings()
        self._clock = clock
        #: Wakes long polls when a command is queued.
        self._queued = asyncio.Condition()
        #: Wakes ``submit``/``cancel`` when a command is taken.
        self._taken = asyncio.Condition()

    # -- Venue: commands ------------------------------------------------------------------------

    async def submit(self, order: VenueOrder) -> None:
        body = Mt5Order(
            order_id=order.order_id,
            client_order_id=order.client_order_id,
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
        await self._send(order.account_id, order.client_order_id, "submit", body)

    async def cancel(self, account_id: str, client_order_id: str) -> None:
        await self._send(account_id, client_order_id, "cancel", None)

    async def _send(self, account_id: str, client_order_id: str, kind: str, order: Mt5Order | None) -> None:
        tenant = await self.tenant_of(account_id)
        if tenant is None:
            raise ValueError(f"{account_id} is not an MT5 account")
        command = Mt5Command(
            command_id=uuid.uuid4(),
            kind="submit" if kind == "submit" else "cancel",
            account_id=account_id,
            client_order_id=client_order_id,
            order=order,
        )
        command = await self._store.enqueue(tenant, command)
        async with self._queued:
            self._queued.notify_all()
        deadline = time.monotonic() + self.settings.submit_timeout_s
        while True:
            state = await self._store.state_of(account_id, client_order_id, kind)
            if state is not None and state.state in ("delivered", "done"):
                return
            if state is not None and state.state == "withdrawn":
                raise VenueTimeout(f"the {kind} of {client_order_id} was withdrawn: the link did not take it")
            left = deadline - time.monotonic()
            if left <= 0:
                raise VenueTimeout(
                    f"the MT5 link did not take the {kind} of {client_order_id} within "
                    f"{self.settings.submit_timeout_s:g} s"
                )
            async with self._taken:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._taken.wait(), timeout=min(left, 0.5))

    # -- the link's side (routes) ----------------------------------------------------------------

    async def take_commands(self, tenant: str, accounts: Sequence[str], wait_s: float) -> list[Mt5Command]:
        """The long poll: the commands of ``accounts`` (the caller's tenant's MT5 accounts), as soon
        as there are some, or ``[]`` after ``wait_s``."""
        deadline = time.monotonic() + wait_s
        while True:
            commands = await self._store.claim(tenant, accounts, self.settings.redeliver_after_s)
            if commands:
                async with self._taken:
                    self._taken.notify_all()
                return commands
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            # Bounded: a command queued by another engine instance wakes nobody here.
            async with self._queued:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._queued.wait(), timeout=min(left, 1.0))

    async def accept_reports(self, reports: Mt5Reports) -> None:
        """Reports from the terminal, in order; each reaches the engine (which dedupes them). A
        command is done once its order was accepted, rejected or executed."""
        for report in reports.reports:
            fill = None
            if report.fill is not None:
                fill = VenueFill(
                    venue_fill_id=report.fill.deal_ticket,
                    quantity=report.fill.quantity,
                    price=report.fill.price,
                    commission=report.fill.commission,
                    ts_ns=report.fill.time_ns,
                )
            await self._sink(
                VenueReport(
                    kind=report.kind,
                    account_id=reports.account_id,
                    client_order_id=report.client_order_id,
                    ts_ns=report.time_ns,
                    venue_order_id=report.venue_order_id,
                    fill=fill,
                    reason_code=report.reason_code,
                    reason=report.reason,
                )
            )
            kind = "cancel" if report.kind == "canceled" else "submit"
            await self._store.finish(reports.account_id, report.client_order_id, kind)

    async def accept_snapshot(self, tenant: str, snapshot: Mt5Snapshot) -> None:
        await self._store.save_snapshot(tenant, snapshot)

    async def withdraw_expired(self) -> int:
        """Withdraw commands nobody took in time; their orders are rejected ``venue_unreachable``."""
        withdrawn = await self._store.withdraw_expired(self.settings.command_ttl_s)
        for command in withdrawn:
            if command.kind != "submit":
                continue
            await self._sink(
                VenueReport(
                    kind="rejected",
                    account_id=command.account_id,
                    client_order_id=command.client_order_id,
                    ts_ns=self._clock(),
                    reason_code="venue_unreachable",
                    reason=f"the MT5 link did not take the order within {self.settings.command_ttl_s:g} s",
                )
            )
        if withdrawn:
            log.warning("withdrew %d MT5 command(s) the link never took", len(withdrawn))
        return len(withdrawn)

    # -- Venue: reconciliation -----------------------------------------------------------------

    async def _fresh_snapshot(self, account_id: str) -> Mt5Snapshot:
        found = await self._store.snapshot(account_id)
        if found is None:
            raise VenueTimeout(f"no snapshot of {account_id} from its terminal yet")
        snapshot, age = found
        if age > self.settings.snapshot_max_age_s:
            raise VenueTimeout(f"the last snapshot of {account_id} is {age:.0f} s old")
        return snapshot

    async def order_status(self, account_id: str, client_order_id: str) -> VenueOrderStatus:
        snapshot = await self._fresh_snapshot(account_id)
        comment = mt5_comment(client_order_id)
        mine = [o for o in snapshot.orders if o.comment == comment and o.magic == PLATFORM_MAGIC]
        if not mine:
            command = await self._store.state_of(account_id, client_order_id)
            if command is not None and command.state in ("queued", "delivered"):
                raise VenueTimeout(f"{client_order_id} is still on its way to the terminal")
            if command is not None and command.state == "done" and snapshot.taken_at_ns < command.created_at * 1e9:
                raise VenueTimeout(f"the snapshot of {account_id} predates {client_order_id}")
            return VenueOrderStatus(client_order_id=client_order_id, state="not_found")
        order = mine[-1]
        fills = tuple(
            VenueFill(d.ticket, d.quantity, d.price, d.commission, d.time_ns)
            for d in snapshot.deals
            if d.order_ticket == order.ticket
        )
        return VenueOrderStatus(
            client_order_id=client_order_id,
            state=order.state,
            venue_order_id=order.ticket,
            filled_quantity=order.volume_initial - order.volume_current,
            fills=fills,
        )

    async def open_orders(self, account_id: str) -> list[VenueOrderStatus]:
        snapshot = await self._fresh_snapshot(account_id)
        return [
            VenueOrderStatus(
                client_order_id=o.comment,
                state=o.state,
                venue_order_id=o.ticket,
                filled_quantity=o.volume_initial - o.volume_current,
            )
            for o in snapshot.orders
            if o.state in ("accepted", "partially_filled")
        ]

    async def positions(self, account_id: str) -> list[VenuePosition]:
        snapshot = await self._fresh_snapshot(account_id)
        net: dict[str, tuple[Decimal, Decimal]] = {}
        for p in snapshot.positions:  # a hedging account may hold several per symbol: net them
            qty, cost = net.get(p.symbol, (Decimal(0), Decimal(0)))
            net[p.symbol] = (qty + p.quantity, cost + p.quantity * p.price_open)
        return [
            VenuePosition(account_id, symbol, qty, (cost / qty) if qty else Decimal(0))
            for symbol, (qty, cost) in sorted(net.items())
            if qty
        ]

    async def fills_since(self, account_id: str, since_ns: int) -> list[VenueReport]:
        snapshot = await self._fresh_snapshot(account_id)
        return [
            VenueReport(
                kind="fill",
                account_id=account_id,
                client_order_id=d.comment,
                ts_ns=d.time_ns,
                venue_order_id=d.order_ticket,
                fill=VenueFill(d.ticket, d.quantity, d.price, d.commission, d.time_ns),
            )
            for d in snapshot.deals
            if d.time_ns >= since_ns and d.magic == PLATFORM_MAGIC
        ]
