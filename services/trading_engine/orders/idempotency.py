"""Idempotency keys of ``POST /api/v1/orders``: the same key and body answer what the first request
answered; the same key with another body is refused; concurrent requests with one key make one order.

The key is claimed in the placing transaction (``INSERT ... ON CONFLICT DO NOTHING``): a second
request with the same key waits on the first one's uncommitted row, and once that commits finds it
and replays. If the first request failed (its transaction rolled back) the key was never stored
and the second one places the order itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg

from services.trading_engine.orders.models import OrderRequest


class IdempotencyMismatch(Exception):
    """The key was used before with a different request (a 409 at the edge)."""


@dataclass(frozen=True, slots=True)
class Replay:
    """An earlier request with the same key and body: its order, and its answer once stored."""

    order_id: uuid.UUID
    status: int | None
    body: dict[str, Any] | None


def request_hash(request: OrderRequest) -> str:
    """The request's fingerprint: its fields as parsed (so key order and number spelling do not matter)."""
    fields = {
        name: format(value.normalize(), "f") if isinstance(value, Decimal) else value
        for name, value in request.model_dump().items()
    }
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def claim(
    conn: asyncpg.Connection, tenant: str, key: str, fingerprint: str, order_id: uuid.UUID
) -> Replay | None:
    """Claim ``key`` for this request and the order it is about to make (``None``: stored in the same
    transaction as the order, so the two commit or vanish together), or the earlier request's
    ``Replay``; raises ``IdempotencyMismatch`` if the earlier request was another."""
    claimed = await conn.fetchval(
        "INSERT INTO trading.idempotency_keys (tenant, key, request_hash, order_id) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT DO NOTHING RETURNING true",
        tenant,
        key,
        fingerprint,
        order_id,
    )
    if claimed:
        return None
    row = await conn.fetchrow(
        "SELECT request_hash, order_id, status, body FROM trading.idempotency_keys WHERE tenant = $1 AND key = $2",
        tenant,
        key,
    )
    assert row is not None
    if row["request_hash"] != fingerprint:
        raise IdempotencyMismatch(f"Idempotency-Key {key} was used with a different request")
    return Replay(row["order_id"], row["status"], None if row["body"] is None else json.loads(row["body"]))


async def answer(pool: asyncpg.Pool, tenant: str, key: str, status: int, body: dict[str, Any]) -> Replay:
    """Remember the key's answer for the replays, unless one was remembered already (the first wins);
    returns the answer that stands."""
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE trading.idempotency_keys SET status = $3, body = $4::jsonb"
            " WHERE tenant = $1 AND key = $2 AND status IS NULL",
            tenant,
            key,
            status,
            json.dumps(body),
        )
        row = await conn.fetchrow(
            "SELECT order_id, status, body FROM trading.idempotency_keys WHERE tenant = $1 AND key = $2", tenant, key
        )
    assert row is not None
    return Replay(row["order_id"], row["status"], json.loads(row["body"]))


async def wait_for_answer(pool: asyncpg.Pool, tenant: str, key: str, timeout_s: float) -> Replay | None:
    """The stored answer of a key whose first request is still submitting, once there (or ``None``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        async with pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT order_id, status, body FROM trading.idempotency_keys WHERE tenant = $1 AND key = $2",
                tenant,
                key,
            )
        if row is not None and row["status"] is not None:
            return Replay(row["order_id"], row["status"], json.loads(row["body"]))
        if loop.time() >= deadline:
            return None
        await asyncio.sleep(0.05)
