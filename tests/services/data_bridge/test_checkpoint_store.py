"""The bar stage's checkpoint store on the real PostgreSQL (no mesh): a partition's builder state,
offset and epoch round-trip exactly, a save replaces the last one, groups, topics and partitions stay
apart, and a checkpoint written before epochs were recorded loads as one of an unknown epoch."""

from __future__ import annotations

import json
from decimal import Decimal

import asyncpg
import pytest

from services.data_bridge.bar_stage import CheckpointStore
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
        ]
        assert await migrate_postgres(url, SERVICE.name, migrations) == []  # once only
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        yield pool
        await pool.close()


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
    await store.save(0, "epoch-a", 42, builder)
    checkpoint = await store.load(0)
    assert (checkpoint.epoch, checkpoint.next_offset) == ("epoch-a", 42)
    assert checkpoint.builder.snapshot() == builder.snapshot()
    assert checkpoint.builder.open_bars("EURUSD") == builder.open_bars("EURUSD")
    assert await store.offsets() == {0: ("epoch-a", 42)}


async def test_a_save_replaces_the_previous_one_and_keys_stay_apart(pool):
    store = CheckpointStore(pool, group="test.replace")
    await store.save(3, "e1", 10, BarBuilder())
    await store.save(3, "e2", 11, builder_with_open_bars())
    await store.save(4, "e2", 99, BarBuilder())
    other_group = CheckpointStore(pool, group="test.other")
    other_topic = CheckpointStore(pool, group="test.replace", topic="market.ticks.v2")
    assert ((await store.load(3)).epoch, (await store.load(3)).next_offset) == ("e2", 11)
    assert (await store.load(4)).next_offset == 99
    assert await store.offsets() == {3: ("e2", 11), 4: ("e2", 99)}
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
    assert (checkpoint.epoch, checkpoint.next_offset) == (None, 335)
    assert checkpoint.builder.open_bars("EURUSD") == builder_with_open_bars().open_bars("EURUSD")
