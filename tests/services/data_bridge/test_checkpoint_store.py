"""The bar stage's checkpoint store on the real PostgreSQL (no mesh): a partition's builder state,
offset, epoch and bar offsets round-trip exactly, a save replaces the last one, groups, topics and
partitions stay apart, a stored checkpoint never goes back within its epoch, and a checkpoint written
before epochs (or bar offsets) were recorded loads as one of an unknown epoch (with no bar offsets)."""

from __future__ import annotations

import json
from decimal import Decimal

import asyncpg
import pytest

from services.data_bridge.bar_stage import CheckpointStore, Snapshot
from services.data_bridge.domain.bars import BarBuilder
from services.data_bridge.service import SERVICE
from shared.events import MarketTick, Timeframe, tick_event_id
from shared.kit.migrations import migrate_postgres
from tests.support import own_database

BASE_NS = 1_767_225_600_000_000_000


@pytest.fixture(scope="module")
async def pool(infra_env):
    _, env, _ = infra_env
    async with own_database(env["DATABASE_URL"], "cp") as url:
        migrations = SERVICE.migrations_dir("postgres")
        assert await migrate_postgres(url, SERVICE.name, migrations) == [
            "data-bridge/001_bar_checkpoints",
            "data-bridge/002_checkpoint_epoch",
            "data-bridge/003_stored_checkpoints",
        ]
        assert await migrate_postgres(url, SERVICE.name, migrations) == []  # once only
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        yield pool
        await pool.close()


def snapshot(epoch: str, next_offset: int, builder: BarBuilder, bars: dict[int, int] | None = None) -> Snapshot:
    return Snapshot(epoch, next_offset, json.dumps(builder.snapshot()), bars or {})


def builder_with_open_bars() -> BarBuilder:
    builder = BarBuilder((Timeframe.M1, Timeframe.M5), allowed_lateness_ns=2_000_000_000)
    for i in range(10):
        ts = BASE_NS + i * 7_000_000_000
        bid = Decimal("1.1") + Decimal(i) / 10_000
        builder.add(
            MarketTick(
                event_id=tick_event_id("EURUSD", ts // 1_000_000, bid, bid, None, Decimal(0), 0),
                ts_event=ts,
                ts_init=ts,
                symbol="EURUSD",
                bid=bid,
                ask=bid,
            ),
            0,
        )
    return builder


async def test_a_checkpoint_round_trips_the_builder_and_its_offset(pool):
    store = CheckpointStore(pool, group="test.roundtrip")
    assert await store.load(0) is None
    builder = builder_with_open_bars()
    await store.save(0, snapshot("epoch-a", 42, builder, {0: 7, 3: 12}))
    checkpoint = await store.load(0)
    assert (checkpoint.epoch, checkpoint.next_offset, checkpoint.bars_offsets) == ("epoch-a", 42, {0: 7, 3: 12})
    assert checkpoint.builder.snapshot() == builder.snapshot()
    assert checkpoint.builder.open_bars("EURUSD") == builder.open_bars("EURUSD")
    assert await store.stored_offsets() == {} and await store.load_stored(0) is None  # saved is not stored
    await store.save_stored(0, snapshot("epoch-a", 40, builder))
    stored = await store.load_stored(0)
    assert (stored.epoch, stored.next_offset) == ("epoch-a", 40)
    assert stored.builder.open_bars("EURUSD") == builder.open_bars("EURUSD")
    assert await store.stored_offsets() == {0: ("epoch-a", 40)}


async def test_a_stored_checkpoint_never_goes_back_within_its_epoch(pool):
    store = CheckpointStore(pool, group="test.stored")
    await store.save_stored(1, snapshot("e1", 50, BarBuilder()))
    await store.save_stored(1, snapshot("e1", 30, BarBuilder()))  # a late writer: ignored
    assert await store.stored_offsets() == {1: ("e1", 50)}
    await store.save_stored(1, snapshot("e2", 3, BarBuilder()))  # a new log starts low
    assert await store.stored_offsets() == {1: ("e2", 3)}


async def test_a_save_replaces_the_previous_one_and_keys_stay_apart(pool):
    store = CheckpointStore(pool, group="test.replace")
    await store.save(3, snapshot("e1", 10, BarBuilder()))
    await store.save(3, snapshot("e2", 11, builder_with_open_bars()))
    await store.save(4, snapshot("e2", 99, BarBuilder()))
    other_group = CheckpointStore(pool, group="test.other")
    other_topic = CheckpointStore(pool, group="test.replace", topic="market.ticks.v2")
    assert ((await store.load(3)).epoch, (await store.load(3)).next_offset) == ("e2", 11)
    assert (await store.load(4)).next_offset == 99
    assert ((await store.load(4)).epoch, (await store.load(4)).bars_offsets) == ("e2", {})
    assert await other_group.load(3) is None and await other_topic.load(3) is None
    assert (
        await pool.fetchval("SELECT count(*) FROM data_bridge.bar_checkpoints WHERE consumer_group = 'test.replace'")
        == 2
    )


async def test_a_checkpoint_from_before_epochs_loads_with_no_epoch(pool):
    # What an existing var/postgres holds after the migration: a row written by the previous version.
    await pool.execute(
        "INSERT INTO data_bridge.bar_checkpoints (consumer_group, topic, partition, next_offset, state) "
        "VALUES ('test.legacy', $1, 3, 335, $2::jsonb)",
        MarketTick.TOPIC,
        json.dumps(builder_with_open_bars().snapshot()),
    )
    checkpoint = await CheckpointStore(pool, group="test.legacy").load(3)
    assert (checkpoint.epoch, checkpoint.next_offset, checkpoint.bars_offsets) == (None, 335, None)
    assert checkpoint.builder.open_bars("EURUSD") == builder_with_open_bars().open_bars("EURUSD")
