"""Each service's migrations are applied once, in order, recorded under its name; an edited one is
refused; a store migrated before migrations moved into the services is adopted, not migrated again."""

from __future__ import annotations

import hashlib

import asyncpg
import pytest

from shared.clickhouse import ChdbClickHouse
from shared.kit.migrations import MigrationChanged, migrate_clickhouse, migrate_postgres
from tests.support import own_database


@pytest.fixture
async def database(infra_env):
    _, env, _ = infra_env
    async with own_database(env["DATABASE_URL"], "mig") as url:
        yield url


def write(folder, name: str, sql: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(sql)


async def test_applied_once_in_order_under_the_services_name(database, tmp_path):
    # Deliberately not idempotent: a second run of either file would fail.
    write(tmp_path, "002_more.sql", "ALTER TABLE things ADD COLUMN y int;")
    write(tmp_path, "001_things.sql", "CREATE TABLE things (x int);")
    write(tmp_path, "notes.sql", "this is not a migration")
    assert await migrate_postgres(database, "svc-a", tmp_path) == ["svc-a/001_things", "svc-a/002_more"]
    assert await migrate_postgres(database, "svc-a", tmp_path) == []
    conn = await asyncpg.connect(database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM information_schema.columns WHERE table_name = 'things'") == 2
    finally:
        await conn.close()
    # Another service numbers its files independently.
    other = tmp_path / "other"
    write(other, "001_things.sql", "CREATE TABLE other_things (x int);")
    assert await migrate_postgres(database, "svc-b", other) == ["svc-b/001_things"]


async def test_an_applied_migration_that_was_edited_is_refused(database, tmp_path):
    write(tmp_path, "001_t.sql", "CREATE TABLE t (x int);")
    await migrate_postgres(database, "svc", tmp_path)
    write(tmp_path, "001_t.sql", "CREATE TABLE t (x bigint);")
    with pytest.raises(MigrationChanged, match="svc/001_t"):
        await migrate_postgres(database, "svc", tmp_path)


async def test_a_store_migrated_the_old_way_is_adopted_by_checksum(database, tmp_path):
    sql = "CREATE TABLE legacy (x int);"
    write(tmp_path, "001_renamed_since.sql", sql)
    conn = await asyncpg.connect(database)
    try:  # what the old runner left: the table, and a bare version with the file's checksum
        await conn.execute(sql)
        await conn.execute(
            "CREATE TABLE public.schema_migrations (version text PRIMARY KEY, checksum text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        await conn.execute(
            "INSERT INTO public.schema_migrations (version, checksum) VALUES ($1, $2)",
            "001_some_old_name",
            hashlib.sha256(sql.encode()).hexdigest(),
        )
    finally:
        await conn.close()
    assert await migrate_postgres(database, "svc", tmp_path) == ["svc/001_renamed_since"]  # recorded, not run


async def test_clickhouse_follows_the_same_rules(tmp_path):
    folder = tmp_path / "migrations"
    write(folder, "001_t.sql", "CREATE TABLE IF NOT EXISTS default.t (x UInt8) ENGINE = MergeTree ORDER BY x;\n")
    ch = ChdbClickHouse(tmp_path / "chdb")
    try:
        assert await migrate_clickhouse(ch, "svc", folder) == ["svc/001_t"]
        assert await migrate_clickhouse(ch, "svc", folder) == []
        write(folder, "001_t.sql", "CREATE TABLE IF NOT EXISTS default.t (x UInt16) ENGINE = MergeTree ORDER BY x;\n")
        with pytest.raises(MigrationChanged):
            await migrate_clickhouse(ch, "svc", folder)
    finally:
        ch.close()


async def test_a_shared_set_is_applied_first_once_whichever_service_starts_first(database, tmp_path):
    # The model registry's tables: ml-supervised and ml-deep-learning both declare the set.
    shared = tmp_path / "registry"
    write(shared, "001_models.sql", "CREATE TABLE models (id int PRIMARY KEY);")  # a second run would fail
    own_a, own_b = tmp_path / "a", tmp_path / "b"
    write(own_a, "001_uses_models.sql", "CREATE TABLE a_things (model int REFERENCES models (id));")
    write(own_b, "001_uses_models.sql", "CREATE TABLE b_things (model int REFERENCES models (id));")
    registry = (("model-registry", shared),)
    assert await migrate_postgres(database, "svc-a", own_a, registry) == [
        "model-registry/001_models",
        "svc-a/001_uses_models",
    ]
    assert await migrate_postgres(database, "svc-b", own_b, registry) == ["svc-b/001_uses_models"]
    assert await migrate_postgres(database, "svc-a", own_a, registry) == []
    write(shared, "001_models.sql", "CREATE TABLE models (id bigint PRIMARY KEY);")
    with pytest.raises(MigrationChanged, match="model-registry/001_models"):
        await migrate_postgres(database, "svc-b", own_b, registry)
