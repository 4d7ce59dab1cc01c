"""The MT5 venue's client side: takes the engine's orders to the terminal, reports what it did.

The trader's PC is behind NAT, so this end opens the link: a long poll of the commands queued
for its accounts (``GET /api/v1/venues/mt5/commands`` through the gateway, with the connector's
own OAuth2 client, scope ``venue``), ``order_send`` for each, and the answers back (``POST
/api/v1/venues/mt5/reports``); every ``snapshot_interval_s``, and after every command, the
terminal's orders, positions and deals (``PUT /api/v1/venues/mt5/snapshot``) plus a fill report
for every deal of the platform's orders (the engine drops the ones it has).

Never twice: before sending an order the executor looks for it at the terminal by its comment
(``shared.mt5_link.mt5_comment``) and magic. A command handed out again (this process was killed
mid ``order_send``, the answer was lost) finds the order the first attempt placed and reports it.
An ``order_send`` that returns nothing (the terminal's answer lost) reports nothing: the next
attempt, or the next snapshot, tells the engine what happened.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, Protocol

import httpx

from shared.mt5_link import (
    MAX_WAIT_S,
    PLATFORM_MAGIC,
    Mt5Command,
    Mt5DealView,
    Mt5Fill,
    Mt5OrderView,
    Mt5PositionView,
    Mt5Report,
    Mt5Reports,
    Mt5Snapshot,
    mt5_comment,
)

log = logging.getLogger(__name__)

#: ``await call("order_send", request)``: one MetaTrader5 API call (on the terminal's thread).
TerminalCall = Callable[..., Awaitable[Any]]

COMMANDS_PATH = "/api/v1/venues/mt5/commands"
REPORTS_PATH = "/api/v1/venues/mt5/reports"
SNAPSHOT_PATH = "/api/v1/venues/mt5/snapshot"
#: How far back the terminal's history is read for reconciliation.
HISTORY_DAYS = 7
#: Slippage MT5 may take on a market order, in points.
DEVIATION_POINTS = 20


def _decimal(value: float) -> Decimal:
    # MT5 hands out binary floats; their shortest repr is the value the terminal shows.
    return Decimal(repr(float(value)))


class VenueExecutor:
    """Carries out commands on the terminal and describes its state (``mt5`` is the module API:
    constants are read from it, calls go through ``call``)."""

    def __init__(self, mt5: Any, call: TerminalCall, account_id: str, *, wall_clock: Callable[[], float]) -> None:
        self.mt5 = mt5
        self._call = call
        self.account_id = account_id
        self._wall_clock = wall_clock

    # -- commands ----------------------------------------------------------------------------

    async def execute(self, command: Mt5Command) -> list[Mt5Report]:
        """Carry ``command`` out (once: an order already at the terminal is reported, not sent again)."""
        found = await self._find(command.client_order_id)
        if command.kind == "cancel":
            return await self._cancel(command.client_order_id, found)
        if found is not None:
            log.info(
                "order %s is at the terminal already (ticket %s): reporting it", command.client_order_id, found.ticket
            )
            return await self._describe(command.client_order_id, found)
        assert command.order is not None
        request = await self._request(command)
        result = await self._call("order_send", request)
        if result is None:
            code = await self._call("last_error")
            log.warning(
                "order_send of %s got no answer (%s): the next attempt looks for it", command.client_order_id, code
            )
            return []
        now = self._now_ns()
        m = self.mt5
        if result.retcode in (m.TRADE_RETCODE_DONE, m.TRADE_RETCODE_PLACED, m.TRADE_RETCODE_DONE_PARTIAL):
            ticket = str(result.order)
            reports = [
                Mt5Report(kind="accepted", client_order_id=command.client_order_id, time_ns=now, venue_order_id=ticket)
            ]
            return reports + await self._fills_of(command.client_order_id, ticket)
        return [
            Mt5Report(
                kind="rejected",
                client_order_id=command.client_order_id,
                time_ns=now,
                reason_code=f"mt5_{result.retcode}",
                reason=f"order_send: {result.retcode} {result.comment}"[:500],
            )
        ]

    async def _request(self, command: Mt5Command) -> dict[str, Any]:
        m, order = self.mt5, command.order
        assert order is not None
        buy = order.side == "buy"
        request: dict[str, Any] = {
            "symbol": order.symbol,
            "volume": float(order.quantity),
            "magic": PLATFORM_MAGIC,
            "comment": mt5_comment(order.client_order_id),
            "type_time": m.ORDER_TIME_DAY if order.time_in_force == "day" else m.ORDER_TIME_GTC,
        }
        if order.stop_loss is not None:
            request["sl"] = float(order.stop_loss)
        if order.take_profit is not None:
            request["tp"] = float(order.take_profit)
        if order.type == "market":
            tick = await self._call("symbol_info_tick", order.symbol)
            request |= {
                "action": m.TRADE_ACTION_DEAL,
                "type": m.ORDER_TYPE_BUY if buy else m.ORDER_TYPE_SELL,
                "price": tick.ask if buy else tick.bid,
                "deviation": DEVIATION_POINTS,
                "type_filling": m.ORDER_FILLING_FOK if order.time_in_force == "fok" else m.ORDER_FILLING_IOC,
            }
            return request
        kinds = {
            "limit": (m.ORDER_TYPE_BUY_LIMIT, m.ORDER_TYPE_SELL_LIMIT),
            "stop": (m.ORDER_TYPE_BUY_STOP, m.ORDER_TYPE_SELL_STOP),
            "stop_limit": (m.ORDER_TYPE_BUY_STOP_LIMIT, m.ORDER_TYPE_SELL_STOP_LIMIT),
        }[order.type]
        price = order.limit_price if order.type == "limit" else order.stop_price
        request |= {
            "action": m.TRADE_ACTION_PENDING,
            "type": kinds[0] if buy else kinds[1],
            "price": float(price) if price is not None else 0.0,
            "type_filling": m.ORDER_FILLING_RETURN,
        }
        if order.type == "stop_limit" and order.limit_price is not None:
            request["stoplimit"] = float(order.limit_price)
        return request

    async def _cancel(self, client_order_id: str, found: Any) -> list[Mt5Report]:
        m, now = self.mt5, self._now_ns()
        if found is None:
            return [
                Mt5Report(
                    kind="rejected",
                    client_order_id=client_order_id,
                    time_ns=now,
                    reason_code="mt5_unknown_order",
                    reason="cancel: no such order at the terminal",
                )
            ]
        if found.state not in (m.ORDER_STATE_PLACED, m.ORDER_STATE_PARTIAL, m.ORDER_STATE_STARTED):
            return await self._describe(client_order_id, found)  # already final: say what it became
        result = await self._call("order_send", {"action": m.TRADE_ACTION_REMOVE, "order": found.ticket})
        if result is None or result.retcode != m.TRADE_RETCODE_DONE:
            refreshed = await self._find(client_order_id)
            return await self._describe(client_order_id, refreshed) if refreshed is not None else []
        return [
            Mt5Report(kind="canceled", client_order_id=client_order_id, time_ns=now, venue_order_id=str(found.ticket))
        ]

    # -- what the terminal holds ---------------------------------------------------------------

    async def _history_window(self) -> tuple[dt.datetime, dt.datetime]:
        now = dt.datetime.fromtimestamp(self._wall_clock(), dt.UTC)
        return now - dt.timedelta(days=HISTORY_DAYS), now + dt.timedelta(days=1)

    async def _orders(self) -> list[Any]:
        """Open orders, then the history's (the newest last), of the platform's magic."""
        start, end = await self._history_window()
        open_orders = await self._call("orders_get") or ()
        history = await self._call("history_orders_get", start, end) or ()
        return [o for o in (*history, *open_orders) if o.magic == PLATFORM_MAGIC]

    async def _find(self, client_order_id: str) -> Any:
        comment = mt5_comment(client_order_id)
        matches = [o for o in await self._orders() if o.comment == comment]
        return matches[-1] if matches else None

    async def _describe(self, client_order_id: str, order: Any) -> list[Mt5Report]:
        m, now, ticket = self.mt5, self._now_ns(), str(order.ticket)
        if order.state == m.ORDER_STATE_REJECTED:
            return [
                Mt5Report(
                    kind="rejected",
                    client_order_id=client_order_id,
                    time_ns=now,
                    venue_order_id=ticket,
                    reason_code="mt5_rejected",
                    reason="rejected by the trade server",
                )
            ]
        reports = [Mt5Report(kind="accepted", client_order_id=client_order_id, time_ns=now, venue_order_id=ticket)]
        reports += await self._fills_of(client_order_id, ticket)
        final = {m.ORDER_STATE_CANCELED: "canceled", m.ORDER_STATE_EXPIRED: "expired"}.get(order.state)
        if final is not None:
            reports.append(Mt5Report(kind=final, client_order_id=client_order_id, time_ns=now, venue_order_id=ticket))
        return reports

    async def _fills_of(self, client_order_id: str, ticket: str) -> list[Mt5Report]:
        deals = await self._call("history_deals_get", ticket=int(ticket)) or ()
        return [self._fill_report(client_order_id, d) for d in deals]

    def _fill_report(self, client_order_id: str, deal: Any) -> Mt5Report:
        return Mt5Report(
            kind="fill",
            client_order_id=client_order_id,
            time_ns=int(deal.time_msc) * 1_000_000,
            venue_order_id=str(deal.order),
            fill=Mt5Fill(
                deal_ticket=str(deal.ticket),
                quantity=_decimal(deal.volume),
                price=_decimal(deal.price),
                commission=abs(_decimal(deal.commission)),
                time_ns=int(deal.time_msc) * 1_000_000,
            ),
        )

    async def snapshot(self) -> tuple[Mt5Snapshot, list[Mt5Report]]:
        """The terminal's state, and a report for every fill and final state of the platform's orders."""
        m = self.mt5
        states = {
            m.ORDER_STATE_STARTED: "accepted",
            m.ORDER_STATE_PLACED: "accepted",
            m.ORDER_STATE_PARTIAL: "partially_filled",
            m.ORDER_STATE_FILLED: "filled",
            m.ORDER_STATE_CANCELED: "canceled",
            m.ORDER_STATE_REJECTED: "rejected",
            m.ORDER_STATE_EXPIRED: "expired",
        }
        orders = await self._orders()
        start, end = await self._history_window()
        deals = [
            d
            for d in await self._call("history_deals_get", start, end) or ()
            if d.magic == PLATFORM_MAGIC and d.type in (m.DEAL_TYPE_BUY, m.DEAL_TYPE_SELL)
        ]
        positions = await self._call("positions_get") or ()
        buys = (m.ORDER_TYPE_BUY, m.ORDER_TYPE_BUY_LIMIT, m.ORDER_TYPE_BUY_STOP, m.ORDER_TYPE_BUY_STOP_LIMIT)
        snapshot = Mt5Snapshot(
            account_id=self.account_id,
            taken_at_ns=self._now_ns(),
            orders=[
                Mt5OrderView(
                    ticket=str(o.ticket),
                    comment=o.comment,
                    magic=o.magic,
                    symbol=o.symbol,
                    side="buy" if o.type in buys else "sell",
                    state=states.get(o.state, "accepted"),  # type: ignore[arg-type]
                    volume_initial=_decimal(o.volume_initial),
                    volume_current=_decimal(o.volume_current),
                )
                for o in orders
            ],
            positions=[
                Mt5PositionView(
                    ticket=str(p.ticket),
                    symbol=p.symbol,
                    quantity=_decimal(p.volume) * (1 if p.type == m.POSITION_TYPE_BUY else -1),
                    price_open=_decimal(p.price_open),
                    comment=p.comment,
                    magic=p.magic,
                )
                for p in positions
            ],
            deals=[
                Mt5DealView(
                    ticket=str(d.ticket),
                    order_ticket=str(d.order),
                    comment=d.comment,
                    magic=d.magic,
                    symbol=d.symbol,
                    side="buy" if d.type == m.DEAL_TYPE_BUY else "sell",
                    quantity=_decimal(d.volume),
                    price=_decimal(d.price),
                    commission=abs(_decimal(d.commission)),
                    time_ns=int(d.time_msc) * 1_000_000,
                )
                for d in deals
            ],
        )
        by_ticket = {str(o.ticket): o for o in orders}
        reports = [self._fill_report(by_ticket[str(d.order)].comment, d) for d in deals if str(d.order) in by_ticket]
        for o in orders:
            final = {m.ORDER_STATE_CANCELED: "canceled", m.ORDER_STATE_EXPIRED: "expired"}.get(o.state)
            if final is not None:
                reports.append(
                    Mt5Report(
                        kind=final,
                        client_order_id=o.comment,
                        time_ns=snapshot.taken_at_ns,
                        venue_order_id=str(o.ticket),
                    )
                )
        return snapshot, reports

    def _now_ns(self) -> int:
        return int(self._wall_clock() * 1e9)


class Server(Protocol):
    """What the link needs of the server: authenticated requests through the gateway."""

    async def get(self, path: str) -> httpx.Response: ...
    async def post(self, path: str, body: dict[str, Any]) -> httpx.Response: ...
    async def put(self, path: str, body: dict[str, Any]) -> httpx.Response: ...


class VenueLink:
    """The loop: long poll, execute, report; snapshot periodically. Survives any outage by retrying."""

    def __init__(
        self, executor: VenueExecutor, server: Server, *, snapshot_interval_s: float = 5.0, retry_s: float = 1.0
    ) -> None:
        self.executor = executor
        self.server = server
        self.snapshot_interval_s = snapshot_interval_s
        self.retry_s = retry_s
        self._last_snapshot = 0.0
        #: Why the link is not working right now (readiness), or ``None``.
        self.problem: str | None = "not connected yet"

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                if loop.time() - self._last_snapshot >= self.snapshot_interval_s:
                    await self.sync()
                    self._last_snapshot = loop.time()
                for command in await self.poll():
                    reports = await self.executor.execute(command)
                    await self._send_reports(reports)
                    await self.sync()
                    self._last_snapshot = loop.time()
                self.problem = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the link, the gateway or the engine is away: retry, lose nothing
                self.problem = f"venue link: {type(exc).__name__}: {exc}"[:300]
                log.warning("venue link failed (%s); retrying in %.1f s", exc, self.retry_s)
                await asyncio.sleep(self.retry_s)

    async def poll(self) -> list[Mt5Command]:
        account = self.executor.account_id
        response = await self.server.get(f"{COMMANDS_PATH}?account={account}&wait_s={MAX_WAIT_S:g}")
        response.raise_for_status()
        return [Mt5Command.model_validate(c) for c in response.json()["commands"]]

    async def sync(self) -> None:
        snapshot, reports = await self.executor.snapshot()
        await self._send_reports(reports)
        response = await self.server.put(SNAPSHOT_PATH, snapshot.model_dump(mode="json"))
        response.raise_for_status()

    async def _send_reports(self, reports: list[Mt5Report]) -> None:
        for start in range(0, len(reports), 500):
            body = Mt5Reports(account_id=self.executor.account_id, reports=reports[start : start + 500])
            response = await self.server.post(REPORTS_PATH, body.model_dump(mode="json"))
            response.raise_for_status()
