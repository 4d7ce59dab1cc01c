"""Accounts: the platform's paper account made on the first start, and accounts admins add."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from services.trading_engine.orders.models import decimal_text
from shared.auth.scopes import PLATFORM_TENANT, TENANT_PATTERN
from shared.events import Venue

#: The id of the platform tenant's paper account.
PLATFORM_PAPER_ACCOUNT = "paper-platform"

_COLUMNS = "id, tenant, venue, name, currency, balance, margin_rate, venue_account, created_at"


class AccountCreate(BaseModel):
    """``POST /api/v1/accounts``: a new account of ``tenant`` (the caller's own unless a platform admin
    names another) on ``venue``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    venue: Venue
    name: str = Field(min_length=1, max_length=64)
    tenant: str | None = Field(default=None, pattern=TENANT_PATTERN)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3,8}$")
    balance: Decimal = Field(default=Decimal(0), ge=0, max_digits=28, decimal_places=8, allow_inf_nan=False)
    #: Share of the notional held as margin (1/leverage); unset: each instrument's own.
    margin_rate: Decimal | None = Field(default=None, gt=0, le=1, max_digits=10, decimal_places=8)
    #: The venue's own id of the account (an MT5 login).
    venue_account: str | None = Field(default=None, min_length=1, max_length=64)


async def ensure_platform_paper_account(pool: asyncpg.Pool, balance: Decimal, currency: str) -> bool:
    """Create the platform tenant's paper account unless it exists; ``True`` if this call made it."""
    async with pool.acquire() as conn:
        made = await conn.fetchval(
            "INSERT INTO trading.accounts (id, tenant, venue, name, currency, balance)"
            " VALUES ($1, $2, 'paper', 'platform paper account', $3, $4) ON CONFLICT (id) DO NOTHING RETURNING true",
            PLATFORM_PAPER_ACCOUNT,
            PLATFORM_TENANT,
            currency,
            balance,
        )
    return bool(made)


async def account_exists(db: asyncpg.Pool | asyncpg.Connection, tenant: str, account_id: str) -> bool:
    """Whether ``tenant`` has the account ``account_id`` (on a pool, or in the caller's transaction)."""
    found = await db.fetchval("SELECT 1 FROM trading.accounts WHERE tenant = $1 AND id = $2", tenant, account_id)
    return found is not None


async def create_account(pool: asyncpg.Pool, tenant: str, spec: AccountCreate) -> dict[str, Any]:
    """A new account of ``tenant`` (its id made here: ``<venue>-<12 hex>``)."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            f"INSERT INTO trading.accounts ({_COLUMNS})"
            f" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now()) RETURNING {_COLUMNS}",
            f"{spec.venue}-{uuid.uuid4().hex[:12]}",
            tenant,
            spec.venue,
            spec.name,
            spec.currency,
            spec.balance,
            spec.margin_rate,
            spec.venue_account,
        )
    assert row is not None
    return account_json(row, Decimal(0), Decimal(0))


async def list_accounts(pool: asyncpg.Pool, tenant: str, account_id: str | None = None) -> list[dict[str, Any]]:
    """The tenant's accounts (or one of them) with their used margin, reservations and available money."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT {_COLUMNS},"
            " (SELECT COALESCE(sum(margin), 0) FROM trading.positions p WHERE p.account_id = a.id) AS used_margin,"
            " (SELECT COALESCE(sum(amount), 0) FROM trading.reservations r WHERE r.account_id = a.id) AS reserved"
            " FROM trading.accounts a WHERE tenant = $1 AND ($2::text IS NULL OR id = $2) ORDER BY created_at, id",
            tenant,
            account_id,
        )
    return [account_json(r, r["used_margin"], r["reserved"]) for r in rows]


def account_json(row: asyncpg.Record, used_margin: Decimal, reserved: Decimal) -> dict[str, Any]:
    text = decimal_text
    return {
        "id": row["id"],
        "tenant": row["tenant"],
        "venue": row["venue"],
        "name": row["name"],
        "currency": row["currency"],
        "balance": text(row["balance"]),
        "used_margin": text(used_margin),
        "reserved": text(reserved),
        "available": text(row["balance"] - used_margin - reserved),
        "margin_rate": text(row["margin_rate"]),
        "venue_account": row["venue_account"],
        "created_at": row["created_at"].isoformat(),
    }
