"""Storage of the MT5 venue's link: the command queue the connector's long poll drains, and the
latest snapshot of each account's terminal (tables in ``050_mt5_link.sql``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import orjson

from shared.mt5_link import Mt5Command, Mt5Snapshot


@dataclass(frozen=True, slots=True)
class CommandState:
    command_id: uuid.UUID
    state: str
    #: Epoch seconds when it was created (the database's clock).
    created_at: float


class Mt5LinkStore:
    """The command queue and snapshots, over an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def enqueue(self, tenant: str, command: Mt5Command) -> Mt5Command:
        """Queue ``command`` unless its account already has one of its kind for the same order
        (then that one is returned: a command is never queued twice)."""
        row = await self._pool.fetchrow(
            "INSERT INTO trading.mt5_commands "
            "(command_id, tenant, account_id, client_order_id, kind, payload, state) "
            "VALUES ($1, $2, $3, $4, $5, $6::jsonb, 'queued') "
            "ON CONFLICT (account_id, client_order_id, kind) DO NOTHING RETURNING command_id",
            command.command_id,
            tenant,
            command.account_id,
            command.client_order_id,
            command.kind,
            command.model_dump_json(),
        )
        if row is not None:
            return command
        payload = await self._pool.fetchval(
            "SELECT payload FROM trading.mt5_commands WHERE account_id = $1 AND client_order_id = $2 AND kind = $3",
            command.account_id,
            command.client_order_id,
            command.kind,
        )
        return Mt5Command.model_validate_json(payload)

    async def claim(self, tenant: str, accounts: Sequence[str], redeliver_after_s: float) -> list[Mt5Command]:
        """Hand out the queued commands of ``accounts``, and the delivered ones nobody answered within
        ``redeliver_after_s`` (the connector may have died holding them), oldest first."""
        rows = await self._pool.fetch(
            "UPDATE trading.mt5_commands SET state = 'delivered', attempts = attempts + 1, delivered_at = now() "
            "WHERE command_id IN ("
            "  SELECT command_id FROM trading.mt5_commands WHERE tenant = $1 AND account_id = ANY($2::text[]) "
            "  AND (state = 'queued' OR (state = 'delivered' AND delivered_at < now() - make_interval(secs => $3))) "
            "  ORDER BY created_at LIMIT 100 FOR UPDATE SKIP LOCKED) "
            "RETURNING payload, attempts, created_at",
            tenant,
            list(accounts),
            redeliver_after_s,
        )
        rows = sorted(rows, key=lambda r: r["created_at"])
        return [
            Mt5Command.model_validate_json(r["payload"]).model_copy(update={"attempt": r["attempts"]}) for r in rows
        ]

    async def finish(self, account_id: str, client_order_id: str, kind: str) -> None:
        """The terminal answered the command: it is not handed out again."""
        await self._pool.execute(
            "UPDATE trading.mt5_commands SET state = 'done', finished_at = now() "
            "WHERE account_id = $1 AND client_order_id = $2 AND kind = $3 AND state IN ('queued', 'delivered')",
            account_id,
            client_order_id,
            kind,
        )

    async def withdraw_expired(self, ttl_s: float) -> list[Mt5Command]:
        """Withdraw the commands still queued after ``ttl_s``: nobody took them, so they never reached
        the terminal and never will (a stale order must not execute when the link comes back)."""
        rows = await self._pool.fetch(
            "UPDATE trading.mt5_commands SET state = 'withdrawn', finished_at = now() "
            "WHERE state = 'queued' AND created_at < now() - make_interval(secs => $1) RETURNING payload",
            ttl_s,
        )
        return [Mt5Command.model_validate_json(r["payload"]) for r in rows]

    async def state_of(self, account_id: str, client_order_id: str, kind: str = "submit") -> CommandState | None:
        row = await self._pool.fetchrow(
            "SELECT command_id, state, extract(epoch FROM created_at) AS created FROM trading.mt5_commands "
            "WHERE account_id = $1 AND client_order_id = $2 AND kind = $3",
            account_id,
            client_order_id,
            kind,
        )
        return None if row is None else CommandState(row["command_id"], row["state"], float(row["created"]))

    async def save_snapshot(self, tenant: str, snapshot: Mt5Snapshot) -> None:
        """Keep the newest snapshot of the account (an older one arriving late changes nothing)."""
        await self._pool.execute(
            "INSERT INTO trading.mt5_snapshots (account_id, tenant, taken_at_ns, document) "
            "VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (account_id) DO UPDATE SET "
            "taken_at_ns = EXCLUDED.taken_at_ns, document = EXCLUDED.document, received_at = now() "
            "WHERE trading.mt5_snapshots.taken_at_ns <= EXCLUDED.taken_at_ns",
            snapshot.account_id,
            tenant,
            snapshot.taken_at_ns,
            snapshot.model_dump_json(),
        )

    async def snapshot(self, account_id: str) -> tuple[Mt5Snapshot, float] | None:
        """The account's latest snapshot and how many seconds ago it arrived."""
        row = await self._pool.fetchrow(
            "SELECT document, extract(epoch FROM now() - received_at) AS age FROM trading.mt5_snapshots "
            "WHERE account_id = $1",
            account_id,
        )
        if row is None:
            return None
        return Mt5Snapshot.model_validate(orjson.loads(row["document"])), float(row["age"])
