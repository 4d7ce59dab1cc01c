"""database-service's store tests: a real chdb with the service's own migrations applied."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.database_service.repository import MarketRepository
from shared.clickhouse import ChdbClickHouse
from shared.kit.migrations import migrate_clickhouse

MIGRATIONS = Path(__file__).parents[3] / "services" / "database_service" / "migrations" / "clickhouse"


async def no_pause(_: float) -> None:
    """The isolating store's ``sleep``: its backoff is not what these tests are about."""
    await asyncio.sleep(0)


@pytest.fixture(scope="module")
async def repo(tmp_path_factory):
    """A market repository on a fresh, migrated chdb, one per test module."""
    ch = ChdbClickHouse(tmp_path_factory.mktemp("chdb"))
    await migrate_clickhouse(ch, "database-service", MIGRATIONS)
    yield MarketRepository(ch)
    ch.close()
