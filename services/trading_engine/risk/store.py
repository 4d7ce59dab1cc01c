"""Risk storage on PostgreSQL (``trading.risk_limit_versions``, ``trading.kill_switches``).

Every function takes a connection, the caller's: a change runs inside the caller's transaction
and returns the events that record it, which the caller writes to its outbox in the same
transaction (so a change and its event are committed together or not at all).
Times are ns since the epoch in the domain and ``timestamptz`` (microseconds) here.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg

from services.trading_engine.risk.kill_switch import KillSwitch, reset
from services.trading_engine.risk.limits import (
    LimitsVersion,
    Wire,
    from_wire,
    override_to_wire,
    parse_override,
    to_wire,
)
from shared.events import Event

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)

#: Cancels the open orders a new switch covers, in the caller's transaction; returns how many.
CancelInScope = Callable[[asyncpg.Connection, KillSwitch], Awaitable[int]]


class SwitchNotFound(LookupError):
    pass


def to_time(ns: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=ns // 1000)


def to_ns(at: dt.datetime) -> int:
    return (at - EPOCH) // _US * 1000


def _in_transaction(conn: asyncpg.Connection) -> None:
    if not conn.is_in_transaction():
        raise RuntimeError("risk changes run in the caller's transaction (with its outbox)")


# -- limits ---------------------------------------------------------------------------------------

_LIMITS_COLUMNS = "tenant, account_id, version, limits, actor, reason, created_at"


def _version(row: asyncpg.Record) -> LimitsVersion:
    return LimitsVersion(
        tenant=row["tenant"],
        account_id=row["account_id"],
        version=row["version"],
        limits=json.loads(row["limits"]),
        actor=row["actor"],
        reason=row["reason"],
        created_ns=to_ns(row["created_at"]),
    )


async def current_limits(conn: asyncpg.Connection, tenant: str, account_id: str | None = None) -> LimitsVersion | None:
    """The newest version of a tenant's limits (``account_id`` None) or of one account's override."""
    row = await conn.fetchrow(
        f"SELECT {_LIMITS_COLUMNS} FROM trading.risk_limit_versions "
        "WHERE tenant = $1 AND COALESCE(account_id, '') = COALESCE($2, '') ORDER BY version DESC LIMIT 1",
        tenant,
        account_id,
    )
    return _version(row) if row else None


async def limits_history(
    conn: asyncpg.Connection, tenant: str, account_id: str | None = None, limit: int = 50
) -> list[LimitsVersion]:
    """Versions of a tenant's limits or an account's override, newest first."""
    rows = await conn.fetch(
        f"SELECT {_LIMITS_COLUMNS} FROM trading.risk_limit_versions "
        "WHERE tenant = $1 AND COALESCE(account_id, '') = COALESCE($2, '') ORDER BY version DESC LIMIT $3",
        tenant,
        account_id,
        limit,
    )
    return [_version(r) for r in rows]


async def all_current_limits(conn: asyncpg.Connection) -> list[LimitsVersion]:
    """The current version of every tenant and account (to fill a ``LimitsBook`` at start)."""
    rows = await conn.fetch(
        f"SELECT DISTINCT ON (tenant, COALESCE(account_id, '')) {_LIMITS_COLUMNS} "
        "FROM trading.risk_limit_versions ORDER BY tenant, COALESCE(account_id, ''), version DESC"
    )
    return [_version(r) for r in rows]


async def put_limits(
    conn: asyncpg.Connection,
    *,
    tenant: str,
    account_id: str | None,
    limits: Wire,
    actor: str,
    reason: str | None,
    now_ns: int,
) -> tuple[LimitsVersion, list[Event]]:
    """Store a new version (the next number for this tenant or account) and return its event.

    A tenant's ``limits`` are its whole set (missing names take their defaults); an account's are its
    overrides only. Validated and normalised here too (``InvalidLimits``). Concurrent changes of the
    same tenant or account serialise on a transaction lock, so versions never collide or skip.
    """
    _in_transaction(conn)
    canonical = to_wire(from_wire(limits)) if account_id is None else override_to_wire(parse_override(limits))
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"risk-limits|{tenant}|{account_id or ''}"
    )
    version = await conn.fetchval(
        "SELECT COALESCE(max(version), 0) + 1 FROM trading.risk_limit_versions "
        "WHERE tenant = $1 AND COALESCE(account_id, '') = COALESCE($2, '')",
        tenant,
        account_id,
    )
    stored = LimitsVersion(tenant, account_id, version, canonical, actor, reason, now_ns // 1000 * 1000)
    await conn.execute(
        "INSERT INTO trading.risk_limit_versions (tenant, account_id, version, limits, actor, reason, created_at) "
        "VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7)",
        tenant,
        account_id,
        version,
        json.dumps(canonical),
        actor,
        reason,
        to_time(now_ns),
    )
    return stored, [stored.event()]


# -- kill switches --------------------------------------------------------------------------------

_SWITCH_COLUMNS = (
    "switch_id, scope, target, tenant, state, actor, reason, automatic, canceled_orders, "
    "tripped_at, reset_by, reset_reason, reset_at"
)


def _switch(row: asyncpg.Record) -> KillSwitch:
    return KillSwitch(
        switch_id=row["switch_id"],
        scope=row["scope"],
        target=row["target"],
        tenant=row["tenant"],
        state=row["state"],
        actor=row["actor"],
        reason=row["reason"],
        automatic=row["automatic"],
        tripped_ns=to_ns(row["tripped_at"]),
        canceled_orders=row["canceled_orders"],
        reset_by=row["reset_by"],
        reset_reason=row["reset_reason"],
        reset_ns=to_ns(row["reset_at"]) if row["reset_at"] else None,
    )


@dataclass(frozen=True)
class Tripped:
    """The outcome of a trip: the switch now tripped in that scope, whether this trip made it, its events."""

    switch: KillSwitch
    created: bool
    events: list[Event] = field(default_factory=list)


async def trip_switch(conn: asyncpg.Connection, switch: KillSwitch, cancel: CancelInScope | None = None) -> Tripped:
    """Store a new tripped ``switch``, have ``cancel`` cancel the open orders it covers, return its event.

    If a switch of the same scope and target is tripped already, that one is returned (``created``
    False) and nothing changes: tripping twice (a double click, two throttles) is one trip.
    """
    _in_transaction(conn)
    inserted = await conn.fetchval(
        "INSERT INTO trading.kill_switches (switch_id, scope, target, tenant, state, actor, reason, automatic, "
        "tripped_at) VALUES ($1, $2, $3, $4, 'tripped', $5, $6, $7, $8) "
        "ON CONFLICT (tenant, scope, COALESCE(target, '')) WHERE state = 'tripped' DO NOTHING RETURNING switch_id",
        switch.switch_id,
        switch.scope,
        switch.target,
        switch.tenant,
        switch.actor,
        switch.reason,
        switch.automatic,
        to_time(switch.tripped_ns),
    )
    if inserted is None:
        row = await conn.fetchrow(
            f"SELECT {_SWITCH_COLUMNS} FROM trading.kill_switches WHERE tenant = $1 AND scope = $2 "
            "AND COALESCE(target, '') = COALESCE($3, '') AND state = 'tripped'",
            switch.tenant,
            switch.scope,
            switch.target,
        )
        return Tripped(_switch(row), created=False)
    canceled = await cancel(conn, switch) if cancel is not None else 0
    if canceled:
        await conn.execute(
            "UPDATE trading.kill_switches SET canceled_orders = $2 WHERE switch_id = $1", switch.switch_id, canceled
        )
    stored = replace(switch, tripped_ns=switch.tripped_ns // 1000 * 1000, canceled_orders=canceled)
    return Tripped(stored, created=True, events=[stored.event()])


async def get_switch(conn: asyncpg.Connection, switch_id: uuid.UUID, *, lock: bool = False) -> KillSwitch | None:
    row = await conn.fetchrow(
        f"SELECT {_SWITCH_COLUMNS} FROM trading.kill_switches WHERE switch_id = $1" + (" FOR UPDATE" if lock else ""),
        switch_id,
    )
    return _switch(row) if row else None


async def reset_switch(
    conn: asyncpg.Connection, switch_id: uuid.UUID, *, person: str | None, reason: str | None, now_ns: int
) -> tuple[KillSwitch, list[Event]]:
    """Re-enable a tripped switch (``ResetRefused`` without a person and a reason, or if not tripped)."""
    _in_transaction(conn)
    switch = await get_switch(conn, switch_id, lock=True)
    if switch is None:
        raise SwitchNotFound(str(switch_id))
    done = reset(switch, person=person, reason=reason, now_ns=now_ns // 1000 * 1000)
    await conn.execute(
        "UPDATE trading.kill_switches SET state = 'reset', reset_by = $2, reset_reason = $3, reset_at = $4 "
        "WHERE switch_id = $1",
        switch_id,
        done.reset_by,
        done.reset_reason,
        to_time(now_ns),
    )
    return done, [done.event()]


async def list_switches(
    conn: asyncpg.Connection,
    *,
    tenants: list[str] | None,
    state: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[KillSwitch]:
    """Switches of ``tenants`` (``None``: every tenant), newest first, optionally only ``state``."""
    conditions: list[str] = []
    args: list[Any] = []
    if tenants is not None:
        args.append(tenants)
        conditions.append(f"tenant = ANY(${len(args)})")
    if state is not None:
        args.append(state)
        conditions.append(f"state = ${len(args)}")
    where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
    args += [limit, offset]
    rows = await conn.fetch(
        f"SELECT {_SWITCH_COLUMNS} FROM trading.kill_switches {where}"
        f"ORDER BY tripped_at DESC, switch_id LIMIT ${len(args) - 1} OFFSET ${len(args)}",
        *args,
    )
    return [_switch(r) for r in rows]


async def tripped_switches(conn: asyncpg.Connection) -> list[KillSwitch]:
    """Every switch tripped now (to fill a ``KillSwitchBoard`` at start)."""
    rows = await conn.fetch(f"SELECT {_SWITCH_COLUMNS} FROM trading.kill_switches WHERE state = 'tripped'")
    return [_switch(r) for r in rows]


__all__ = [
    "CancelInScope",
    "SwitchNotFound",
    "Tripped",
    "all_current_limits",
    "current_limits",
    "get_switch",
    "limits_history",
    "list_switches",
    "put_limits",
    "reset_switch",
    "trip_switch",
    "tripped_switches",
]
