"""The paper venue's tables (``trading.paper_*``, migration 040): its orders, deals, netting
positions and the reports it owes the engine. Every write happens on a connection inside the
caller's transaction, so a fill, its deal, the order's filled quantity, the position change and the
report commit together or not at all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg

from services.trading_engine.venues.base import VenueFill, VenueOrder, VenueOrderState, VenueOrderStatus, VenueReport
from services.trading_engine.venues.paper_rules import Position, WorkingOrder


def venue_order_id(pk: int) -> str:
    return f"paper-{pk}"


def venue_fill_id(pk: int, fill_no: int) -> str:
    """The ``fill_no``-th deal of order ``pk``: stable, so a fill is never made (or reported) twice."""
    return f"paper-{pk}-{fill_no}"


@dataclass(frozen=True, slots=True)
class OrderRow:
    """An order as the venue stores it."""

    pk: int
    account_id: str
    client_order_id: str
    symbol: str
    working: WorkingOrder
    state: VenueOrderState
    fill_count: int
    expires_ns: int | None
    reason_code: str | None
    reason: str | None

    @classmethod
    def of(cls, row: asyncpg.Record) -> OrderRow:
        working = WorkingOrder(
            side=row["side"],
            type=row["type"],
            time_in_force=row["time_in_force"],
            quantity=row["quantity"],
            filled_quantity=row["filled_quantity"],
            limit_price=row["limit_price"],
            stop_price=row["stop_price"],
            triggered=row["triggered"],
        )
        return cls(
            row["id"],
            row["account_id"],
            row["client_order_id"],
            row["symbol"],
            working,
            row["state"],
            row["fill_count"],
            row["expires_ns"],
            row["reason_code"],
            row["reason"],
        )


async def insert_order(
    conn: asyncpg.Connection,
    order: VenueOrder,
    *,
    state: VenueOrderState,
    submitted_ns: int,
    eligible_ns: int,
    expires_ns: int | None,
    reason_code: str | None = None,
    reason: str | None = None,
) -> int | None:
    """Store ``order``; its row id, or ``None`` when the account already has its client order id."""
    pk: int | None = await conn.fetchval(
        """
        INSERT INTO trading.paper_orders (account_id, client_order_id, order_id, symbol, side, type, time_in_force,
            quantity, limit_price, stop_price, stop_loss, take_profit, state, submitted_ns, eligible_ns, expires_ns,
            reason_code, reason, updated_ns)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $14)
        ON CONFLICT (account_id, client_order_id) DO NOTHING
        RETURNING id
        """,
        order.account_id,
        order.client_order_id,
        order.order_id,
        order.symbol,
        order.side,
        order.type,
        order.time_in_force,
        order.quantity,
        order.limit_price,
        order.stop_price,
        order.stop_loss,
        order.take_profit,
        state,
        submitted_ns,
        eligible_ns,
        expires_ns,
        reason_code,
        reason,
    )
    return pk


async def lock_order(conn: asyncpg.Connection, account_id: str, client_order_id: str) -> OrderRow | None:
    row = await conn.fetchrow(
        "SELECT * FROM trading.paper_orders WHERE account_id = $1 AND client_order_id = $2 FOR UPDATE",
        account_id,
        client_order_id,
    )
    return OrderRow.of(row) if row else None


async def lock_eligible(
    conn: asyncpg.Connection, symbol: str, time_ns: int, bid: Decimal, ask: Decimal
) -> list[OrderRow]:
    """The open orders of ``symbol`` a tick at ``time_ns`` quoting ``bid``/``ask`` (the venue's quote)
    may act on, oldest first, locked. The price condition only spares the tick the orders it cannot
    touch (limits and untriggered stops away from the market: most resting orders, most ticks); it
    selects a superset of what ``paper_rules.on_tick`` acts on, which decides."""
    rows = await conn.fetch(
        """
        SELECT * FROM trading.paper_orders
        WHERE symbol = $1 AND state IN ('accepted', 'partially_filled') AND eligible_ns <= $2
          AND (type = 'market' OR time_in_force IN ('ioc', 'fok') OR (type = 'stop' AND triggered)
            OR (type IN ('stop', 'stop_limit') AND NOT triggered
                AND CASE WHEN side = 'buy' THEN stop_price <= $4 ELSE stop_price >= $3 END)
            OR ((type = 'limit' OR (type = 'stop_limit' AND triggered))
                AND CASE WHEN side = 'buy' THEN limit_price >= $4 ELSE limit_price <= $3 END))
        ORDER BY id FOR UPDATE
        """,
        symbol,
        time_ns,
        bid,
        ask,
    )
    return [OrderRow.of(r) for r in rows]


async def lock_expiring(conn: asyncpg.Connection, now_ns: int, symbol: str | None = None) -> list[OrderRow]:
    """Open day orders whose trading day ended by ``now_ns`` (of ``symbol``, or of every symbol), locked."""
    rows = await conn.fetch(
        """
        SELECT * FROM trading.paper_orders
        WHERE state IN ('accepted', 'partially_filled') AND expires_ns <= $1 AND ($2::text IS NULL OR symbol = $2)
        ORDER BY id FOR UPDATE
        """,
        now_ns,
        symbol,
    )
    return [OrderRow.of(r) for r in rows]


async def close_order(
    conn: asyncpg.Connection, pk: int, state: VenueOrderState, reason_code: str, reason: str, ts_ns: int
) -> None:
    await conn.execute(
        "UPDATE trading.paper_orders SET state = $2, reason_code = $3, reason = $4, updated_ns = $5 WHERE id = $1",
        pk,
        state,
        reason_code,
        reason,
        ts_ns,
    )


async def mark_triggered(conn: asyncpg.Connection, pk: int, ts_ns: int) -> None:
    await conn.execute("UPDATE trading.paper_orders SET triggered = true, updated_ns = $2 WHERE id = $1", pk, ts_ns)


async def record_fill(
    conn: asyncpg.Connection, order: OrderRow, fill: VenueFill, fill_no: int, state: VenueOrderState
) -> None:
    """The deal and the order's progress (the position and the report are written by the caller)."""
    await conn.execute(
        """
        INSERT INTO trading.paper_deals (account_id, venue_fill_id, order_pk, fill_no, client_order_id, symbol, side,
            quantity, price, commission, ts_ns)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        """,
        order.account_id,
        fill.venue_fill_id,
        order.pk,
        fill_no,
        order.client_order_id,
        order.symbol,
        order.working.side,
        fill.quantity,
        fill.price,
        fill.commission,
        fill.ts_ns,
    )
    await conn.execute(
        """
        UPDATE trading.paper_orders
        SET filled_quantity = filled_quantity + $2, fill_count = $3, state = $4, updated_ns = $5,
            triggered = triggered OR type IN ('stop', 'stop_limit')
        WHERE id = $1
        """,
        order.pk,
        fill.quantity,
        fill_no,
        state,
        fill.ts_ns,
    )


async def lock_position(conn: asyncpg.Connection, account_id: str, symbol: str) -> Position:
    row = await conn.fetchrow(
        "SELECT quantity, average_price, realized_pnl FROM trading.paper_positions "
        "WHERE account_id = $1 AND symbol = $2 FOR UPDATE",
        account_id,
        symbol,
    )
    return Position(row["quantity"], row["average_price"], row["realized_pnl"]) if row else Position()


async def save_position(conn: asyncpg.Connection, account_id: str, symbol: str, position: Position, ts_ns: int) -> None:
    await conn.execute(
        """
        INSERT INTO trading.paper_positions (account_id, symbol, quantity, average_price, realized_pnl, updated_ns)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (account_id, symbol) DO UPDATE SET quantity = EXCLUDED.quantity,
            average_price = EXCLUDED.average_price, realized_pnl = EXCLUDED.realized_pnl,
            updated_ns = EXCLUDED.updated_ns
        """,
        account_id,
        symbol,
        position.quantity,
        position.average_price,
        position.realized_pnl,
        ts_ns,
    )


async def add_report(
    conn: asyncpg.Connection,
    order: OrderRow | tuple[str, str, int],
    kind: str,
    ts_ns: int,
    *,
    fill_id: str | None = None,
    reason_code: str | None = None,
    reason: str | None = None,
) -> None:
    """Owe the engine a report about ``order`` (a row, or its account, client order id and pk)."""
    account_id, client_order_id, pk = (
        (order.account_id, order.client_order_id, order.pk) if isinstance(order, OrderRow) else order
    )
    await conn.execute(
        """
        INSERT INTO trading.paper_reports (account_id, client_order_id, kind, ts_ns, venue_order_id, venue_fill_id,
            reason_code, reason)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        """,
        account_id,
        client_order_id,
        kind,
        ts_ns,
        venue_order_id(pk),
        fill_id,
        reason_code,
        reason,
    )


_PENDING = """
    SELECT r.seq, r.account_id, r.client_order_id, r.kind, r.ts_ns, r.venue_order_id, r.venue_fill_id,
        r.reason_code, r.reason, d.quantity, d.price, d.commission, d.ts_ns AS fill_ts_ns
    FROM trading.paper_reports r
    LEFT JOIN trading.paper_deals d ON d.account_id = r.account_id AND d.venue_fill_id = r.venue_fill_id
    WHERE r.seq > $1
    ORDER BY r.seq LIMIT $2
"""


def _fill_of(row: Any, ts_key: str = "ts_ns") -> VenueFill:
    return VenueFill(row["venue_fill_id"], row["quantity"], row["price"], row["commission"], row[ts_key])


async def pending_reports(pool: asyncpg.Pool, after_seq: int, limit: int) -> list[tuple[int, VenueReport]]:
    """Undelivered reports after ``after_seq``, oldest first, with their sequence numbers."""
    out = []
    for r in await pool.fetch(_PENDING, after_seq, limit):
        fill = _fill_of(r, "fill_ts_ns") if r["kind"] == "fill" else None
        report = VenueReport(
            kind=r["kind"],
            account_id=r["account_id"],
            client_order_id=r["client_order_id"],
            ts_ns=r["ts_ns"],
            venue_order_id=r["venue_order_id"],
            fill=fill,
            reason_code=r["reason_code"],
            reason=r["reason"],
        )
        out.append((r["seq"], report))
    return out


async def mark_delivered(pool: asyncpg.Pool, seqs: Sequence[int]) -> None:
    """Forget delivered reports (the truth stays in the orders and deals)."""
    await pool.execute("DELETE FROM trading.paper_reports WHERE seq = ANY($1::bigint[])", list(seqs))


# -- reconciliation: the whole truth, from the tables ----------------------------------------------


async def _statuses(pool: asyncpg.Pool, where: str, *args: object) -> list[VenueOrderStatus]:
    orders = await pool.fetch(f"SELECT * FROM trading.paper_orders WHERE {where} ORDER BY id", *args)
    if not orders:
        return []
    deals = await pool.fetch(
        "SELECT * FROM trading.paper_deals WHERE order_pk = ANY($1::bigint[]) ORDER BY order_pk, fill_no",
        [o["id"] for o in orders],
    )
    fills: dict[int, list[VenueFill]] = {}
    for d in deals:
        fills.setdefault(d["order_pk"], []).append(_fill_of(d))
    return [
        VenueOrderStatus(
            client_order_id=o["client_order_id"],
            state=o["state"],
            venue_order_id=venue_order_id(o["id"]),
            filled_quantity=o["filled_quantity"],
            fills=tuple(fills.get(o["id"], ())),
            reason_code=o["reason_code"],
            reason=o["reason"],
        )
        for o in orders
    ]


async def order_status(pool: asyncpg.Pool, account_id: str, client_order_id: str) -> VenueOrderStatus:
    found = await _statuses(pool, "account_id = $1 AND client_order_id = $2", account_id, client_order_id)
    return found[0] if found else VenueOrderStatus(client_order_id=client_order_id, state="not_found")


async def open_orders(pool: asyncpg.Pool, account_id: str) -> list[VenueOrderStatus]:
    return await _statuses(pool, "account_id = $1 AND state IN ('accepted', 'partially_filled')", account_id)


async def positions(pool: asyncpg.Pool, account_id: str) -> list[tuple[str, Decimal, Decimal]]:
    """(symbol, signed lots, average price) of every open position of the account."""
    rows = await pool.fetch(
        "SELECT symbol, quantity, average_price FROM trading.paper_positions "
        "WHERE account_id = $1 AND quantity <> 0 ORDER BY symbol",
        account_id,
    )
    return [(r["symbol"], r["quantity"], r["average_price"]) for r in rows]


async def fills_since(pool: asyncpg.Pool, account_id: str, since_ns: int) -> list[VenueReport]:
    rows = await pool.fetch(
        "SELECT * FROM trading.paper_deals WHERE account_id = $1 AND ts_ns >= $2 ORDER BY ts_ns, order_pk, fill_no",
        account_id,
        since_ns,
    )
    return [
        VenueReport("fill", account_id, r["client_order_id"], r["ts_ns"], venue_order_id(r["order_pk"]), _fill_of(r))
        for r in rows
    ]
