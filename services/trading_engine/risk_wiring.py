"""The risk controls inside the engine: the gate as the order manager's pre-trade check, the
kill switch's board, the throttle, and the backend of the risk routes.

``RiskCheck`` builds the gate's ``RiskContext`` from the placing transaction (the account's row is
locked on it, so two orders of one account are judged one after the other, each seeing the other):
the account's positions and open orders, its PnL of the UTC day, the tenant's open exposure. The
kill switch goes first (``RiskGate`` consults the board before anything else).

A trip (by a person through the routes, or by the throttle) is stored with the count of open orders
it covers, in one transaction; once it commits the board blocks new orders at once and the open
orders in scope are canceled at their venues (``OrderManager.cancel_open``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from decimal import Decimal

import asyncpg

from services.trading_engine import accounts
from services.trading_engine.orders.manager import OrderManager
from services.trading_engine.orders.models import Order
from services.trading_engine.orders.pretrade import PreTradeContext, Rejection
from services.trading_engine.orders.states import OPEN
from services.trading_engine.prices import PriceSource
from services.trading_engine.risk import store
from services.trading_engine.risk.context import AccountState, OpenLots, RiskContext, RiskOrder
from services.trading_engine.risk.controls import RiskControls
from services.trading_engine.risk.kill_switch import KillSwitch, OrderFacts
from services.trading_engine.venues.base import VenueReport
from shared.events import Event, KillSwitchChanged
from shared.instruments import instrument
from shared.outbox import Outbox

log = logging.getLogger(__name__)

ZERO = Decimal(0)
_OPEN_STATES = sorted(OPEN)
_DAY_NS = 86_400 * 1_000_000_000


def _day_start_ns(now_ns: int) -> int:
    """The start of the UTC day of ``now_ns`` (the risk limits' trading day)."""
    return now_ns - now_ns % _DAY_NS


class RiskCheck:
    """The gate as a ``PreTradeCheck`` (the order manager runs it inside the placing transaction)."""

    def __init__(self, controls: RiskControls, prices: PriceSource, trips: TripQueue) -> None:
        self.controls = controls
        self.prices = prices
        self.trips = trips

    async def check(self, order: Order, context: PreTradeContext) -> Rejection | None:
        ctx = await self.context(order, context)
        decision = self.controls.evaluate(_risk_order(order), ctx)
        if (trip := self.controls.pnl(order.tenant, order.account_id, ctx.account.pnl_today, ctx.now_ns)) is not None:
            self.trips.trip(trip)
        first = decision.first
        if first is None:
            return None
        if (trip := self.controls.rejected(order.tenant, order.account_id, first.code, ctx.now_ns)) is not None:
            self.trips.trip(trip)
        detail = "; ".join(r.detail for r in decision.rejections)
        return Rejection(first.code, detail[:500])

    async def context(self, order: Order, context: PreTradeContext) -> RiskContext:
        conn, account = context.conn, context.account
        # One round trip: the tenant's positions and open orders, and the account's realised PnL of
        # the day (the 'pnl' row, its sum in ``quantity``).
        rows = await conn.fetch(
            "SELECT 'position' AS kind, account_id, symbol, quantity, average_price, NULL AS side "
            "FROM trading.positions WHERE tenant = $1 AND quantity <> 0 "
            "UNION ALL SELECT 'order', account_id, symbol, sum(quantity - filled_quantity), NULL, side "
            "FROM trading.orders WHERE tenant = $1 AND state = ANY($2::text[]) AND id <> $3 "
            "GROUP BY account_id, symbol, side "
            "UNION ALL SELECT 'pnl', $4::text, NULL, COALESCE(sum(realized_pnl - commission), 0), NULL, NULL "
            "FROM trading.fills WHERE account_id = $4 AND ts_event >= $5",
            order.tenant,
            _OPEN_STATES,
            order.id,
            account.id,
            _day_start_ns(context.now_ns),
        )
        realised = ZERO
        last_prices: dict[str, Decimal] = {}
        positions: dict[str, Decimal] = {}
        open_orders: dict[str, OpenLots] = {}
        exposure = tenant_exposure = unrealised = ZERO
        for row in rows:
            if row["kind"] == "pnl":
                realised = row["quantity"]
                continue
            symbol = row["symbol"]
            spec = instrument(symbol)
            last = self.prices.last_price(symbol)
            if last is not None:
                last_prices[symbol] = last
            size = spec.contract_size if spec is not None else Decimal(1)
            mark = last if last is not None else (row["average_price"] or ZERO)
            notional = abs(row["quantity"]) * size * mark
            tenant_exposure += notional
            if row["account_id"] != account.id:
                continue
            exposure += notional
            if row["kind"] == "position":
                positions[symbol] = row["quantity"]
                if last is not None:
                    unrealised += row["quantity"] * size * (last - row["average_price"])
            else:
                lots = open_orders.get(symbol, OpenLots())
                if row["side"] == "buy":
                    open_orders[symbol] = OpenLots(buy=lots.buy + row["quantity"], sell=lots.sell)
                else:
                    open_orders[symbol] = OpenLots(buy=lots.buy, sell=lots.sell + row["quantity"])
        if context.last_price is not None:
            last_prices[order.symbol] = context.last_price
        return RiskContext(
            now_ns=context.now_ns,
            limits=self.controls.limits_for(order.tenant, order.account_id),
            account=AccountState(
                currency=account.currency,
                balance=context.funds.balance,
                reserved=context.funds.reserved,
                used_margin=context.funds.used_margin,
                open_exposure=exposure,
                realised_pnl_today=realised,
                unrealised_pnl=unrealised,
            ),
            instrument=context.instrument,
            last_prices=last_prices,
            positions=positions,
            open_orders=open_orders,
            tenant_open_exposure=tenant_exposure,
        )


def _risk_order(order: Order) -> RiskOrder:
    return RiskOrder(
        tenant=order.tenant,
        account_id=order.account_id,
        venue=order.venue,
        symbol=order.symbol,
        side=order.side,
        type=order.type,
        quantity=order.quantity,
        limit_price=order.limit_price,
        stop_price=order.stop_price,
        strategy=order.attribution.strategy,
    )


class EngineRiskBackend:
    """What the risk routes (and the throttle) need of the engine: its transactions, outbox, accounts,
    the in-memory controls, and the cancellation of the orders a trip covers."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        outbox: Outbox,
        controls: RiskControls,
        manager: OrderManager,
        clock: Callable[[], int],
    ) -> None:
        self.pool = pool
        self.outbox = outbox
        self.controls = controls
        self.manager = manager
        self._clock = clock
        self._sweeps: set[asyncio.Task[int]] = set()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn

    async def record(self, conn: asyncpg.Connection, events: Sequence[Event]) -> None:
        await self.outbox.record(conn, events)

    async def committed(self, events: Sequence[Event]) -> None:
        self.outbox.deliver_soon(list(events))
        for event in events:
            self.controls.apply(event)
            if isinstance(event, KillSwitchChanged) and event.state == "tripped":
                self._sweep(event)

    async def account_exists(self, conn: asyncpg.Connection, tenant: str, account_id: str) -> bool:
        return await accounts.account_exists(conn, tenant, account_id)

    async def cancel_in_scope(self, conn: asyncpg.Connection, switch: KillSwitch) -> int:
        """How many open orders the switch covers now (they are canceled once the trip commits)."""
        rows = await conn.fetch(
            "SELECT tenant, account_id, venue, attribution->>'strategy' AS strategy FROM trading.orders "
            "WHERE state = ANY($1::text[])",
            _OPEN_STATES,
        )
        return sum(
            1 for r in rows if switch.covers(OrderFacts(r["tenant"], r["account_id"], r["venue"], r["strategy"]))
        )

    def now_ns(self) -> int:
        return self._clock()

    def _sweep(self, event: KillSwitchChanged) -> None:
        scope: dict[str, dict[str, str | None]] = {
            "all": {},
            "venue": {"venue": event.target},
            "tenant": {"tenant": event.tenant},
            "account": {"tenant": event.tenant, "account_id": event.target},
            "strategy": {"tenant": event.tenant, "strategy": event.target},
        }
        task = asyncio.create_task(self.manager.cancel_open(**scope[event.scope]))
        self._sweeps.add(task)
        task.add_done_callback(self._sweeps.discard)


class TripQueue:
    """Trips the throttle decided, carried out one by one after the decision (never inside the
    transaction that judged the order: the trip has its own)."""

    def __init__(self, backend: EngineRiskBackend | None = None) -> None:
        #: Set once the engine is built (the check that decides trips exists before the backend).
        self.backend = backend
        self._queue: asyncio.Queue[KillSwitch] = asyncio.Queue()

    def trip(self, switch: KillSwitch) -> None:
        self._queue.put_nowait(switch)

    async def run(self) -> None:
        while True:
            switch = await self._queue.get()
            if self.backend is None:
                log.error("kill switch %s/%s not tripped: no risk backend", switch.scope, switch.target)
                continue
            try:
                events: list[Event] = []
                async with self.backend.transaction() as conn:
                    tripped = await store.trip_switch(conn, switch, self.backend.cancel_in_scope)
                    events += tripped.events
                    await self.backend.record(conn, events)
                await self.backend.committed(events)
                if tripped.created:
                    log.warning(
                        "kill switch %s/%s tripped by %s: %s", switch.scope, switch.target, switch.actor, switch.reason
                    )
            except Exception:
                log.exception("tripping kill switch %s/%s failed", switch.scope, switch.target)


class ThrottledSink:
    """The venues' report sink: the order manager's, plus the throttle's count of venue rejections."""

    def __init__(self, manager: Callable[[], OrderManager], controls: RiskControls, trips: TripQueue) -> None:
        self._manager = manager
        self.controls = controls
        self.trips = trips

    async def __call__(self, report: VenueReport) -> None:
        manager = self._manager()
        changed = await manager.on_report(report)
        if changed and report.kind == "rejected":
            tenant = await manager.pool.fetchval("SELECT tenant FROM trading.accounts WHERE id = $1", report.account_id)
            if tenant is not None:
                trip = self.controls.rejected(tenant, report.account_id, report.reason_code or "venue", report.ts_ns)
                if trip is not None:
                    self.trips.trip(trip)


__all__ = ["EngineRiskBackend", "RiskCheck", "ThrottledSink", "TripQueue"]
