"""All of user-service's SQL (PostgreSQL schema ``users``, asyncpg).

Every query on tenant-owned rows names the tenant in its ``WHERE`` clause, so a
row of another tenant is simply not found. The one exception is
``Directory.credentials``: authentication starts from a client id alone, and the
tenant is what it finds out.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import asyncpg

from shared.events import Event
from shared.outbox import record_events

#: Serialises bootstraps of concurrent instances (any fixed bigint, distinct from the migrations').
BOOTSTRAP_LOCK_KEY = 0x55534552  # "USER"
#: The directory's transactional outbox (``shared.outbox``).
OUTBOX_TABLE = "users.outbox"

_USER_COLUMNS = """u.id, u.tenant_id, u.username, u.display_name, u.disabled, u.created_at,
       COALESCE(array_agg(r.role ORDER BY r.role) FILTER (WHERE r.role IS NOT NULL), '{}'::text[]) AS roles"""
_USER_FROM = """users.users u
  LEFT JOIN users.user_roles r ON r.tenant_id = u.tenant_id AND r.user_id = u.id"""
_CLIENT_COLUMNS = """client_id, tenant_id, name, scopes, grant_types, disabled, created_at, secret_rotated_at"""


class Conflict(Exception):
    """A uniqueness rule was broken (tenant id, username, client id already taken)."""


@dataclass(frozen=True, slots=True)
class StoredCredentials:
    """What authentication needs about one client; the only place a secret hash is read."""

    client_id: str
    tenant: str
    secret_hash: str
    scopes: list[str]
    grant_types: list[str]
    client_disabled: bool
    tenant_disabled: bool


def tenant_json(row: asyncpg.Record) -> dict:
    return {"id": row["id"], "name": row["name"], "disabled": row["disabled"], "created_at": row["created_at"]}


def user_json(row: asyncpg.Record) -> dict:
    return {
        "id": row["id"],
        "tenant": row["tenant_id"],
        "username": row["username"],
        "display_name": row["display_name"],
        "roles": list(row["roles"]),
        "disabled": row["disabled"],
        "created_at": row["created_at"],
    }


def client_json(row: asyncpg.Record) -> dict:
    """A client as the API shows it: never its secret hash."""
    return {
        "client_id": row["client_id"],
        "tenant": row["tenant_id"],
        "name": row["name"],
        "scopes": sorted(row["scopes"]),
        "grant_types": sorted(row["grant_types"]),
        "disabled": row["disabled"],
        "created_at": row["created_at"],
        "secret_rotated_at": row["secret_rotated_at"],
    }


class Store:
    """The connection pool; hands out a ``Directory`` bound to one connection."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Directory]:
        """A ``Directory`` whose statements commit together, or not at all."""
        async with self.pool.acquire() as conn, conn.transaction():
            yield Directory(conn)

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[Directory]:
        async with self.pool.acquire() as conn:
            yield Directory(conn)


class Directory:
    """The directory's statements on one connection (in a transaction when the caller opened one)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    # -- tenants ----------------------------------------------------------------------------

    async def insert_tenant(self, tenant_id: str, name: str) -> dict:
        row = await self.conn.fetchrow(
            "INSERT INTO users.tenants (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING "
            "RETURNING id, name, disabled, created_at",
            tenant_id,
            name,
        )
        if row is None:
            raise Conflict(f"tenant {tenant_id} already exists")
        return tenant_json(row)

    async def ensure_tenant(self, tenant_id: str, name: str) -> bool:
        """Create the tenant if missing; True if this call created it."""
        created = await self.conn.fetchval(
            "INSERT INTO users.tenants (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING RETURNING true",
            tenant_id,
            name,
        )
        return bool(created)

    async def tenants(self, only: str | None = None) -> list[dict]:
        """Every tenant, or just ``only`` (a tenant admin sees its own tenant alone)."""
        if only is None:
            rows = await self.conn.fetch("SELECT id, name, disabled, created_at FROM users.tenants ORDER BY id")
        else:
            rows = await self.conn.fetch("SELECT id, name, disabled, created_at FROM users.tenants WHERE id = $1", only)
        return [tenant_json(r) for r in rows]

    async def tenant(self, tenant_id: str, *, lock: bool = False) -> dict | None:
        """One tenant; ``lock`` holds it (FOR SHARE) so it cannot be disabled under a write in flight."""
        sql = "SELECT id, name, disabled, created_at FROM users.tenants WHERE id = $1"
        row = await self.conn.fetchrow(sql + (" FOR SHARE" if lock else ""), tenant_id)
        return None if row is None else tenant_json(row)

    async def disable_tenant(self, tenant_id: str) -> tuple[dict | None, bool]:
        """Disable a tenant; returns (tenant or None if unknown, whether this call changed it)."""
        row = await self.conn.fetchrow(
            "UPDATE users.tenants SET disabled = true WHERE id = $1 AND NOT disabled "
            "RETURNING id, name, disabled, created_at",
            tenant_id,
        )
        if row is not None:
            return tenant_json(row), True
        return await self.tenant(tenant_id), False

    # -- users ------------------------------------------------------------------------------

    async def insert_user(self, tenant: str, username: str, display_name: str, roles: Sequence[str]) -> dict:
        user_id = uuid.uuid4()
        try:
            await self.conn.execute(
                "INSERT INTO users.users (id, tenant_id, username, display_name) VALUES ($1, $2, $3, $4)",
                user_id,
                tenant,
                username,
                display_name,
            )
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"username {username} already exists in tenant {tenant}") from exc
        await self._insert_roles(tenant, user_id, roles)
        user = await self.user(tenant, user_id)
        assert user is not None
        return user

    async def users(self, tenant: str, *, limit: int, offset: int) -> list[dict]:
        rows = await self.conn.fetch(
            f"SELECT {_USER_COLUMNS} FROM {_USER_FROM} WHERE u.tenant_id = $1 GROUP BY u.id "
            "ORDER BY u.created_at, u.id LIMIT $2 OFFSET $3",
            tenant,
            limit,
            offset,
        )
        return [user_json(r) for r in rows]

    async def user(self, tenant: str, user_id: uuid.UUID) -> dict | None:
        row = await self.conn.fetchrow(
            f"SELECT {_USER_COLUMNS} FROM {_USER_FROM} WHERE u.tenant_id = $1 AND u.id = $2 GROUP BY u.id",
            tenant,
            user_id,
        )
        return None if row is None else user_json(row)

    async def lock_user(self, tenant: str, user_id: uuid.UUID) -> bool:
        """Hold the user's row until the transaction ends (serialises role changes); False if not in ``tenant``."""
        return bool(
            await self.conn.fetchval(
                "SELECT true FROM users.users WHERE tenant_id = $1 AND id = $2 FOR UPDATE", tenant, user_id
            )
        )

    async def set_roles(self, tenant: str, user_id: uuid.UUID, roles: Sequence[str]) -> dict | None:
        """Replace the user's roles; None if the user is not in ``tenant``."""
        if not await self.lock_user(tenant, user_id):
            return None
        await self.conn.execute("DELETE FROM users.user_roles WHERE tenant_id = $1 AND user_id = $2", tenant, user_id)
        await self._insert_roles(tenant, user_id, roles)
        return await self.user(tenant, user_id)

    async def disable_user(self, tenant: str, user_id: uuid.UUID) -> tuple[dict | None, bool]:
        changed = await self.conn.fetchval(
            "UPDATE users.users SET disabled = true WHERE tenant_id = $1 AND id = $2 AND NOT disabled RETURNING true",
            tenant,
            user_id,
        )
        return await self.user(tenant, user_id), bool(changed)

    async def _insert_roles(self, tenant: str, user_id: uuid.UUID, roles: Sequence[str]) -> None:
        if roles:
            await self.conn.execute(
                "INSERT INTO users.user_roles (tenant_id, user_id, role) SELECT $1, $2, unnest($3::text[])",
                tenant,
                user_id,
                list(roles),
            )

    # -- clients ----------------------------------------------------------------------------

    async def insert_client(
        self,
        tenant: str,
        client_id: str,
        name: str,
        secret_hash: str,
        scopes: Sequence[str],
        grant_types: Sequence[str],
        *,
        created_by: str,
    ) -> dict:
        row = await self.conn.fetchrow(
            "INSERT INTO users.clients"
            " (client_id, tenant_id, name, secret_hash, scopes, grant_types, created_by, secret_set_by) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (client_id) DO NOTHING "
            f"RETURNING {_CLIENT_COLUMNS}",
            client_id,
            tenant,
            name,
            secret_hash,
            sorted(set(scopes)),
            sorted(set(grant_types)),
            created_by,
        )
        if row is None:
            raise Conflict(f"client {client_id} already exists")
        return client_json(row)

    async def clients(self, tenant: str, *, limit: int, offset: int) -> list[dict]:
        rows = await self.conn.fetch(
            f"SELECT {_CLIENT_COLUMNS} FROM users.clients WHERE tenant_id = $1 "
            "ORDER BY created_at, client_id LIMIT $2 OFFSET $3",
            tenant,
            limit,
            offset,
        )
        return [client_json(r) for r in rows]

    async def client(self, tenant: str, client_id: str) -> dict | None:
        row = await self.conn.fetchrow(
            f"SELECT {_CLIENT_COLUMNS} FROM users.clients WHERE tenant_id = $1 AND client_id = $2", tenant, client_id
        )
        return None if row is None else client_json(row)

    async def set_secret(self, tenant: str, client_id: str, secret_hash: str, *, set_by: str) -> dict | None:
        """Replace the client's secret hash (rotation); the old secret stops working at commit."""
        row = await self.conn.fetchrow(
            "UPDATE users.clients SET secret_hash = $3, secret_rotated_at = clock_timestamp(), secret_set_by = $4 "
            f"WHERE tenant_id = $1 AND client_id = $2 RETURNING {_CLIENT_COLUMNS}",
            tenant,
            client_id,
            secret_hash,
            set_by,
        )
        return None if row is None else client_json(row)

    async def disable_client(self, tenant: str, client_id: str) -> tuple[dict | None, bool]:
        changed = await self.conn.fetchval(
            "UPDATE users.clients SET disabled = true WHERE tenant_id = $1 AND client_id = $2 AND NOT disabled "
            "RETURNING true",
            tenant,
            client_id,
        )
        return await self.client(tenant, client_id), bool(changed)

    async def mark_tokens_revoked(self, client_id: str, issued_before: float) -> None:
        """Remember the client's latest token cut-off (epoch seconds)."""
        await self.conn.execute(
            "UPDATE users.clients SET tokens_revoked_before ="
            " GREATEST(tokens_revoked_before, to_timestamp($2)) WHERE client_id = $1",
            client_id,
            float(issued_before),
        )

    async def recent_token_cutoffs(self, within_s: float) -> list[tuple[str, str, int]]:
        """``(tenant, client_id, issued_before)`` of the token cut-offs made in the last ``within_s`` seconds."""
        rows = await self.conn.fetch(
            "SELECT tenant_id, client_id, extract(epoch FROM tokens_revoked_before)::bigint AS issued_before"
            " FROM users.clients WHERE tokens_revoked_before > now() - make_interval(secs => $1)",
            float(within_s),
        )
        return [(r["tenant_id"], r["client_id"], int(r["issued_before"])) for r in rows]

    async def clients_set_up_by(self, subject: str, since_s: float) -> list[tuple[str, str]]:
        """``(tenant, client_id)`` of the enabled clients ``subject`` created or gave a new secret to in the
        last ``since_s`` seconds, in any tenant (a platform admin acts in every tenant)."""
        rows = await self.conn.fetch(
            "SELECT tenant_id, client_id FROM users.clients WHERE NOT disabled AND ("
            "  (created_by = $1 AND created_at >= now() - make_interval(secs => $2))"
            "  OR (secret_set_by = $1 AND secret_rotated_at >= now() - make_interval(secs => $2)))"
            " ORDER BY client_id",
            subject,
            float(since_s),
        )
        return [(r["tenant_id"], r["client_id"]) for r in rows]

    async def count_enabled_clients(self, tenant: str) -> int:
        """Enabled clients of ``tenant``, counted under a per-tenant lock held until the transaction ends
        (two concurrent creations cannot both see room for one more)."""
        await self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('users.clients/' || $1))", tenant)
        return int(
            await self.conn.fetchval("SELECT count(*) FROM users.clients WHERE tenant_id = $1 AND NOT disabled", tenant)
        )

    async def enabled_client_ids(self, tenant: str) -> list[str]:
        rows = await self.conn.fetch(
            "SELECT client_id FROM users.clients WHERE tenant_id = $1 AND NOT disabled ORDER BY client_id", tenant
        )
        return [r["client_id"] for r in rows]

    async def credentials(self, client_id: str) -> StoredCredentials | None:
        """The client's hash, grants and both disabled flags, by client id alone (see module doc)."""
        row = await self.conn.fetchrow(
            "SELECT c.client_id, c.tenant_id, c.secret_hash, c.scopes, c.grant_types, "
            "       c.disabled AS client_disabled, t.disabled AS tenant_disabled "
            "FROM users.clients c JOIN users.tenants t ON t.id = c.tenant_id WHERE c.client_id = $1",
            client_id,
        )
        if row is None:
            return None
        return StoredCredentials(
            row["client_id"],
            row["tenant_id"],
            row["secret_hash"],
            sorted(row["scopes"]),
            sorted(row["grant_types"]),
            row["client_disabled"],
            row["tenant_disabled"],
        )

    async def replace_hash(self, tenant: str, client_id: str, old_hash: str, new_hash: str) -> None:
        """Upgrade a hash made with older parameters, unless the secret was rotated meanwhile."""
        await self.conn.execute(
            "UPDATE users.clients SET secret_hash = $4 WHERE tenant_id = $1 AND client_id = $2 AND secret_hash = $3",
            tenant,
            client_id,
            old_hash,
            new_hash,
        )

    # -- bootstrap --------------------------------------------------------------------------

    async def lock_bootstrap(self) -> None:
        """Wait for any other instance's bootstrap; held until this transaction ends."""
        await self.conn.execute("SELECT pg_advisory_xact_lock($1)", BOOTSTRAP_LOCK_KEY)

    async def bootstrap_client(self, purpose: str) -> str | None:
        return await self.conn.fetchval("SELECT client_id FROM users.bootstrap_clients WHERE purpose = $1", purpose)

    async def set_bootstrap_client(self, purpose: str, client_id: str) -> None:
        await self.conn.execute(
            "INSERT INTO users.bootstrap_clients (purpose, client_id) VALUES ($1, $2) "
            "ON CONFLICT (purpose) DO UPDATE SET client_id = EXCLUDED.client_id, created_at = now()",
            purpose,
            client_id,
        )

    async def bootstrap_clients(self, purpose_prefix: str) -> dict[str, str]:
        """Client ids of the bootstrap clients whose purpose starts with ``purpose_prefix``, by purpose."""
        rows = await self.conn.fetch(
            "SELECT purpose, client_id FROM users.bootstrap_clients WHERE starts_with(purpose, $1)", purpose_prefix
        )
        return {r["purpose"]: r["client_id"] for r in rows}

    async def forget_bootstrap_client(self, purpose: str) -> None:
        """The client stays (disabled by the caller); it is no longer the one for ``purpose``."""
        await self.conn.execute("DELETE FROM users.bootstrap_clients WHERE purpose = $1", purpose)

    async def set_client_scopes(self, tenant: str, client_id: str, scopes: Sequence[str]) -> None:
        await self.conn.execute(
            "UPDATE users.clients SET scopes = $3 WHERE tenant_id = $1 AND client_id = $2",
            tenant,
            client_id,
            sorted(set(scopes)),
        )

    async def is_bootstrap_client(self, client_id: str) -> str | None:
        """The purpose this client was bootstrapped for, or None."""
        return await self.conn.fetchval("SELECT purpose FROM users.bootstrap_clients WHERE client_id = $1", client_id)

    async def secret_hash(self, tenant: str, client_id: str) -> str | None:
        return await self.conn.fetchval(
            "SELECT secret_hash FROM users.clients WHERE tenant_id = $1 AND client_id = $2", tenant, client_id
        )

    async def client_tenant(self, client_id: str) -> str | None:
        """Which tenant owns ``client_id`` (bootstrap only: to refuse adopting another tenant's client)."""
        return await self.conn.fetchval("SELECT tenant_id FROM users.clients WHERE client_id = $1", client_id)

    # -- outbox -----------------------------------------------------------------------------

    async def record(self, events: Sequence[Event]) -> None:
        """Write ``events`` to the outbox, in this transaction: they exist if and only if the change does."""
        await record_events(self.conn, OUTBOX_TABLE, events)
