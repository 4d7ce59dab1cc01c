"""Poison vs outage on the real embedded ClickHouse: refused events are isolated, an outage refuses nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.database_service.repository import MarketRepository
from services.database_service.storing import IsolatingStore, StoreOutage
from shared.events import MarketTick
from tests.services.database_service.conftest import no_pause
from tests.support import quote_tick

BASE_MS = 1_767_225_600_000
POISON_BID = Decimal("1.23456")


@pytest.fixture
async def refusing(repo):
    """The real store refuses one valid price (a table constraint), as it might refuse a value nobody foresaw."""
    await repo.ch.execute(f"ALTER TABLE market.ticks ADD CONSTRAINT no_poison CHECK bid != {POISON_BID}")
    yield
    await repo.ch.execute("ALTER TABLE market.ticks DROP CONSTRAINT no_poison")


def ticks(symbol: str, count: int, poison_at: frozenset[int] = frozenset()) -> list[tuple[int, MarketTick]]:
    return [
        (i, quote_tick(symbol, BASE_MS + i, POISON_BID if i in poison_at else Decimal(110_000 + i % 50).scaleb(-5)))
        for i in range(count)
    ]


async def stored(repo: MarketRepository, symbol: str) -> set[str]:
    return {
        r[0] for r in await repo.ch.rows(f"SELECT toString(event_id) FROM market.ticks FINAL WHERE symbol = '{symbol}'")
    }


async def test_refused_events_are_isolated_and_everything_else_is_stored(repo, refusing):
    batch = ticks("POISONED", 1000, frozenset({0, 417, 999}))
    store = IsolatingStore(repo.insert_ticks, sleep=no_pause)
    refused = await store.store(batch)
    assert [r.item for r in refused] == [0, 417, 999]
    assert all("VIOLATED_CONSTRAINT" in r.error for r in refused)
    assert await stored(repo, "POISONED") == {str(t.event_id) for i, t in batch if i not in (0, 417, 999)}


async def test_a_batch_of_only_the_refused_event_is_refused_once_the_store_is_known_to_work(repo, refusing):
    store = IsolatingStore(repo.insert_ticks, sleep=no_pause)
    assert await store.store(ticks("ALONEOK", 3)) == []
    refused = await store.store(ticks("ALONE", 1, frozenset({0})))
    assert [r.item for r in refused] == [0]
    assert await stored(repo, "ALONE") == set()


async def test_with_no_proof_that_the_store_works_nothing_is_refused(repo, refusing):
    store = IsolatingStore(repo.insert_ticks, sleep=no_pause)
    with pytest.raises(StoreOutage):
        await store.store(ticks("FIRSTPOISON", 1, frozenset({0})))


@pytest.mark.parametrize("known_good", [True, False])
async def test_an_outage_refuses_nothing_and_the_batch_is_stored_once_the_store_is_back(repo, known_good):
    store = IsolatingStore(repo.insert_ticks, sleep=no_pause)
    if known_good:
        assert await store.store(ticks("BEFORE", 5)) == []
    batch = ticks(f"OUTAGE{int(known_good)}", 200)
    await repo.ch.execute("DETACH TABLE market.ticks")  # every insert fails, as with ClickHouse away
    try:
        with pytest.raises(StoreOutage):
            await store.store(batch)
    finally:
        await repo.ch.execute("ATTACH TABLE market.ticks")
    assert await store.store(batch) == []
    assert await stored(repo, f"OUTAGE{int(known_good)}") == {str(t.event_id) for _, t in batch}


async def test_a_passing_failure_is_retried_with_backoff_and_refuses_nothing(repo):
    pauses: list[float] = []
    failures = iter([RuntimeError("connection reset"), RuntimeError("connection reset")])

    async def flaky_insert(events):
        error = next(failures, None)
        if error is not None:
            raise error
        await repo.insert_ticks(events)

    async def pause(seconds: float) -> None:
        pauses.append(seconds)

    batch = ticks("FLAKY", 10)
    assert await IsolatingStore(flaky_insert, sleep=pause).store(batch) == []
    assert pauses == [0.2, 0.4]
    assert await stored(repo, "FLAKY") == {str(t.event_id) for _, t in batch}
