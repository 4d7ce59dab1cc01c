"""The order book's SQL (schema ``trading``): orders, their transitions, fills. Statements run on
the caller's connection, inside the caller's transaction.

Every read a caller can steer names the tenant, so another tenant's order is simply not found.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg

from services.trading_engine.orders.models import Order, decimal_text
from shared.events import Fill, OrderAttribution, OrderState

_COLUMNS = """id, tenant, account_id, venue, client_order_id, symbol, side, type, quantity, limit_price,
 stop_price, time_in_force, stop_loss, take_profit, state, version, filled_quantity, average_fill_price,
 venue_order_id, reason_code, reason, attribution, actor, submitted_ns"""


def order_of(row: asyncpg.Record | Mapping[str, Any]) -> Order:
    values = dict(row)
    values["attribution"] = OrderAttribution.model_validate_json(values["attribution"])
    return Order(**values)


async def insert_order(conn: asyncpg.Connection, order: Order) -> bool:
    """Store a new order (version 1) with its first transition; ``False`` if its client order id
    is taken in the account."""
    # One round trip: the order and its first transition (none if the client order id is taken).
    inserted = await conn.fetchval(
        f"WITH o AS (INSERT INTO trading.orders ({_COLUMNS}) VALUES"
        " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21,"
        " $22::jsonb, $23, $24) ON CONFLICT DO NOTHING RETURNING id, version, state, reason_code, reason)"
        " INSERT INTO trading.order_transitions (order_id, version, from_state, to_state, reason_code, reason)"
        " SELECT id, version, NULL, state, reason_code, reason FROM o RETURNING true",
        order.id,
        order.tenant,
        order.account_id,
        order.venue,
        order.client_order_id,
        order.symbol,
        order.side,
        order.type,
        order.quantity,
        order.limit_price,
        order.stop_price,
        order.time_in_force,
        order.stop_loss,
        order.take_profit,
        order.state,
        order.version,
        order.filled_quantity,
        order.average_fill_price,
        order.venue_order_id,
        order.reason_code,
        order.reason,
        order.attribution.model_dump_json(),
        order.actor,
        order.submitted_ns,
    )
    return bool(inserted)


async def save_transition(conn: asyncpg.Connection, order: Order, previous: OrderState) -> None:
    """Store ``order`` (one version after the stored one) and the transition that made it (one round trip)."""
    saved = await conn.fetchval(
        "WITH o AS (UPDATE trading.orders SET state = $2, version = $3, filled_quantity = $4,"
        " average_fill_price = $5, venue_order_id = $6, reason_code = $7, reason = $8, submitted_ns = $9,"
        " updated_at = now() WHERE id = $1 AND version = $3 - 1 RETURNING id, version, state, reason_code, reason)"
        " INSERT INTO trading.order_transitions (order_id, version, from_state, to_state, reason_code, reason)"
        " SELECT id, version, $10, state, reason_code, reason FROM o RETURNING true",
        order.id,
        order.state,
        order.version,
        order.filled_quantity,
        order.average_fill_price,
        order.venue_order_id,
        order.reason_code,
        order.reason,
        order.submitted_ns,
        previous,
    )
    if not saved:  # the caller holds the order's lock: this is a bug, not a race
        raise RuntimeError(f"order {order.id} is not at version {order.version - 1}")


async def order_by_id(
    conn: asyncpg.Connection, tenant: str, order_id: uuid.UUID, *, lock: bool = False
) -> Order | None:
    lock_clause = " FOR UPDATE" if lock else ""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM trading.orders WHERE tenant = $1 AND id = $2{lock_clause}", tenant, order_id
    )
    return None if row is None else order_of(row)


async def order_by_client_id(
    conn: asyncpg.Connection, account_id: str, client_order_id: str, *, lock: bool = False
) -> Order | None:
    """The order a venue reports about (venues know the account and the client order id)."""
    lock_clause = " FOR UPDATE" if lock else ""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM trading.orders WHERE account_id = $1 AND client_order_id = $2{lock_clause}",
        account_id,
        client_order_id,
    )
    return None if row is None else order_of(row)


#: The account columns ``lock_for_report`` reads (``balance.account_of``'s), prefixed apart from the order's.
_ACCOUNT_COLUMNS = ("id", "tenant", "venue", "name", "currency", "balance", "margin_rate", "venue_account")
_ORDER_NAMES = tuple(name.strip() for name in _COLUMNS.split(","))


async def lock_for_report(
    conn: asyncpg.Connection, account_id: str, client_order_id: str
) -> tuple[dict[str, Any] | None, Order | None]:
    """Lock the account's row, then its order's (the order of locks every transaction keeps), in one
    round trip; the account's columns (``None``: no such account) and the order (``None``: not held).

    The account is locked first: the materialized CTE runs before the lateral subquery that reads
    and locks the order. Both rows come back in their newest committed versions (``FOR UPDATE`` in
    READ COMMITTED re-reads a row changed while it waited)."""
    accounts = ", ".join(f"a.{c} AS a_{c}" for c in _ACCOUNT_COLUMNS)
    row = await conn.fetchrow(
        "WITH a AS MATERIALIZED (SELECT * FROM trading.accounts WHERE id = $1 FOR UPDATE)"
        f" SELECT {accounts}, o.* FROM a LEFT JOIN LATERAL (SELECT {_COLUMNS} FROM trading.orders"
        " WHERE account_id = a.id AND client_order_id = $2 FOR UPDATE) o ON true",
        account_id,
        client_order_id,
    )
    if row is None:
        return None, None
    account = {c: row[f"a_{c}"] for c in _ACCOUNT_COLUMNS}
    if row["id"] is None:
        return account, None
    return account, order_of({name: row[name] for name in _ORDER_NAMES})


async def orders_in(conn: asyncpg.Connection, states: Sequence[str], limit: int | None = 1000) -> list[Order]:
    """Orders in ``states`` across tenants (for reconciliation), oldest first; ``limit=None``: all."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM trading.orders WHERE state = ANY($1::text[]) ORDER BY created_at LIMIT $2",
        list(states),
        limit,
    )
    return [order_of(r) for r in rows]


@dataclass(frozen=True, slots=True)
class OrderFilter:
    tenant: str
    account_id: str | None = None
    state: str | None = None
    symbol: str | None = None
    limit: int = 100
    offset: int = 0


async def list_orders(conn: asyncpg.Connection, query: OrderFilter) -> tuple[list[Order], int]:
    """A page of the tenant's orders, newest first, and how many match in all."""
    where, args = _where(query.tenant, account_id=query.account_id, state=query.state, symbol=query.symbol)
    total = await conn.fetchval(f"SELECT count(*) FROM trading.orders WHERE {where}", *args)
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM trading.orders WHERE {where} ORDER BY created_at DESC, id"
        f" LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}",
        *args,
        query.limit,
        query.offset,
    )
    return [order_of(r) for r in rows], int(total)


def _where(tenant: str, **filters: str | None) -> tuple[str, list[Any]]:
    clauses, args = ["tenant = $1"], [tenant]
    for column, value in filters.items():
        if value is not None:
            args.append(value)
            clauses.append(f"{column} = ${len(args)}")
    return " AND ".join(clauses), args


async def insert_fill(conn: asyncpg.Connection, fill: Fill, realized_pnl: Decimal) -> bool:
    """Store a fill once: ``False`` if its id is already stored (the same deal reported again)."""
    inserted = await conn.fetchval(
        "INSERT INTO trading.fills (fill_id, order_id, tenant, account_id, venue, venue_fill_id, symbol, side,"
        " quantity, price, commission, currency, realized_pnl, ts_event)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        " ON CONFLICT (fill_id) DO NOTHING RETURNING true",
        fill.event_id,
        fill.order_id,
        fill.tenant,
        fill.account_id,
        fill.venue,
        fill.venue_fill_id,
        fill.symbol,
        fill.side,
        fill.quantity,
        fill.price,
        fill.commission,
        fill.currency,
        realized_pnl,
        fill.ts_event,
    )
    return bool(inserted)


async def fill_exists(conn: asyncpg.Connection, fill_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval("SELECT true FROM trading.fills WHERE fill_id = $1", fill_id))


async def list_fills(
    conn: asyncpg.Connection,
    tenant: str,
    *,
    account_id: str | None,
    order_id: uuid.UUID | None,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    where, args = _where(tenant, account_id=account_id)
    if order_id is not None:
        args.append(order_id)
        where += f" AND order_id = ${len(args)}"
    total = await conn.fetchval(f"SELECT count(*) FROM trading.fills WHERE {where}", *args)
    rows = await conn.fetch(
        "SELECT fill_id, order_id, account_id, venue, venue_fill_id, symbol, side, quantity, price, commission,"
        f" currency, realized_pnl, ts_event FROM trading.fills WHERE {where}"
        f" ORDER BY ts_event DESC, fill_id LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}",
        *args,
        limit,
        offset,
    )
    return [_public(dict(r)) for r in rows], int(total)


async def list_positions(conn: asyncpg.Connection, tenant: str, account_id: str | None) -> list[dict[str, Any]]:
    where, args = _where(tenant, account_id=account_id)
    rows = await conn.fetch(
        "SELECT account_id, symbol, quantity, average_price, realized_pnl, margin, updated_at"
        f" FROM trading.positions WHERE {where} ORDER BY account_id, symbol",
        *args,
    )
    return [_public(dict(r)) for r in rows]


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """Decimals as fixed-point strings, uuids and times as text: JSON as the API shows it."""
    return {k: decimal_text(v) if isinstance(v, Decimal) else _plain(v) for k, v in row.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
