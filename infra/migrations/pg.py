"""Apply the PostgreSQL migrations (idempotent; safe to run from several processes at once)."""

from __future__ import annotations

import asyncpg

from infra.migrations import POSTGRES_DIR, check_applied, discover

_LOCK_KEY = 0x4A415453  # any fixed bigint: serialises concurrent runners


async def migrate(url: str) -> list[str]:
    """Apply pending migrations in one transaction; return the versions applied now."""
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            await conn.execute("""CREATE TABLE IF NOT EXISTS public.schema_migrations (
                version text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())""")
            applied = dict(await conn.fetch("SELECT version, checksum FROM public.schema_migrations"))
            done = []
            for migration in discover(POSTGRES_DIR):
                if check_applied(applied, migration):
                    continue
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO public.schema_migrations (version, checksum) VALUES ($1, $2)",
                    migration.version,
                    migration.checksum,
                )
                done.append(migration.version)
            return done
    finally:
        await conn.close()
