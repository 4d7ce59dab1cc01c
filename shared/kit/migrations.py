"""Schema migrations: each service's ordered SQL files, applied once each, verified by checksum.

A service's migrations live with it, by convention::

    services/<name>/migrations/postgres/NNN_what.sql     (applied by the kit's Postgres dependency)
    services/<name>/migrations/clickhouse/NNN_what.sql   (applied by the kit's ClickHouse dependency)

and are applied in one place: when the kit opens that dependency for the service.
A small runner rather than Alembic: Alembic needs SQLAlchemy (we use asyncpg), and
nothing off the shelf migrates chdb, so one runner serves both stores with the same rules:

* files ``NNN_name.sql``, applied in order, each exactly once, recorded as
  ``<service>/NNN_name`` (services number their files independently);
* a migration that was applied and then edited is refused (checksum mismatch):
  a change is a new file, never an edit;
* re-running is a no-op; concurrent PostgreSQL runners serialise on an advisory lock.

A set of tables several services share (the model registry: ml-supervised and ml-deep-learning
write it, others read it) cannot live in one service's folder. It is a *shared set*: a name and a
folder (``("model-registry", Path(".../shared/ml/migrations/postgres"))``) that each service using
it declares (``Postgres(shared_migrations=...)``); it is applied before the service's own files,
in the same transaction and under the same lock, and recorded as ``<set>/NNN_name``, so whichever
service starts first applies it and the others find it done.

Stores migrated before migrations moved into the services recorded bare versions
(``001_data_bridge_checkpoints``); a bare record whose checksum equals a service's
file is adopted for that file instead of running it again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import asyncpg

if TYPE_CHECKING:
    from shared.clickhouse import ClickHouse

_PG_LOCK_KEY = 0x4A415453  # any fixed bigint: serialises concurrent runners


@dataclass(frozen=True)
class Migration:
    """One SQL file of a service."""

    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def statements(self) -> list[str]:
        """Split on ``;`` at line ends (our migrations hold no procedural bodies)."""
        return [s.strip() for s in re.split(r";\s*(?:\n|$)", self.sql) if s.strip() and not _only_comments(s)]


class MigrationChanged(RuntimeError):
    """A migration was edited after it had been applied."""


def _only_comments(sql: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in sql.splitlines())


def discover(directory: Path) -> list[Migration]:
    """The ``NNN_*.sql`` files of ``directory`` in order (none if it does not exist)."""
    files = sorted(p for p in directory.glob("*.sql") if re.match(r"^\d{3}_", p.name))
    return [Migration(p.stem, p) for p in files]


class _Ledger(Protocol):
    async def applied(self) -> dict[str, str]: ...
    async def run(self, migration: Migration) -> None: ...
    async def record(self, version: str, checksum: str) -> None: ...


async def _apply(ledger: _Ledger, service: str, migrations: list[Migration]) -> list[str]:
    applied = await ledger.applied()
    legacy = {checksum for version, checksum in applied.items() if "/" not in version}
    done = []
    for migration in migrations:
        version = f"{service}/{migration.name}"
        if version in applied:
            if applied[version] != migration.checksum:
                raise MigrationChanged(
                    f"migration {version} was edited after being applied; add a new migration instead"
                )
            continue
        if migration.checksum not in legacy:
            await ledger.run(migration)
        await ledger.record(version, migration.checksum)
        done.append(version)
    return done


class _PostgresLedger:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def applied(self) -> dict[str, str]:
        return dict(await self._conn.fetch("SELECT version, checksum FROM public.schema_migrations"))

    async def run(self, migration: Migration) -> None:
        await self._conn.execute(migration.sql)

    async def record(self, version: str, checksum: str) -> None:
        await self._conn.execute(
            "INSERT INTO public.schema_migrations (version, checksum) VALUES ($1, $2)", version, checksum
        )


#: A migration set several services share: its name (recorded as ``<name>/NNN_file``) and folder.
SharedMigrations = tuple[str, Path]


async def migrate_postgres(
    url: str, service: str, directory: Path, shared: Sequence[SharedMigrations] = ()
) -> list[str]:
    """Apply the pending PostgreSQL migrations of the ``shared`` sets, then ``service``'s own, in one
    transaction; the versions applied now."""
    sets = [(name, discover(folder)) for name, folder in (*shared, (service, directory))]
    sets = [(name, migrations) for name, migrations in sets if migrations]
    if not sets:
        return []
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _PG_LOCK_KEY)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS public.schema_migrations (version text PRIMARY KEY, "
                "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            ledger = _PostgresLedger(conn)
            return [version for name, migrations in sets for version in await _apply(ledger, name, migrations)]
    finally:
        await conn.close()


class _ClickHouseLedger:
    def __init__(self, ch: ClickHouse) -> None:
        self._ch = ch

    async def applied(self) -> dict[str, str]:
        return {str(v): str(c) for v, c in await self._ch.rows("SELECT version, checksum FROM hats.schema_migrations")}

    async def run(self, migration: Migration) -> None:
        # ClickHouse DDL is not transactional; every statement is IF NOT EXISTS, so a
        # migration interrupted half-way is simply completed by the next run.
        for statement in migration.statements():
            await self._ch.execute(statement)

    async def record(self, version: str, checksum: str) -> None:
        await self._ch.execute(
            f"INSERT INTO hats.schema_migrations (version, checksum) VALUES ('{version}', '{checksum}')"
        )


async def migrate_clickhouse(ch: ClickHouse, service: str, directory: Path) -> list[str]:
    """Apply ``service``'s pending ClickHouse migrations (same rules, no transaction)."""
    migrations = discover(directory)
    if not migrations:
        return []
    await ch.execute("CREATE DATABASE IF NOT EXISTS hats")
    await ch.execute(
        "CREATE TABLE IF NOT EXISTS hats.schema_migrations (version String, checksum String, "
        "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = MergeTree ORDER BY version"
    )
    return await _apply(_ClickHouseLedger(ch), service, migrations)


__all__ = ["Migration", "MigrationChanged", "SharedMigrations", "discover", "migrate_clickhouse", "migrate_postgres"]
