"""The bots' tables on real PostgreSQL: a bot and its memory survive a restart exactly, one active bot
per symbol and account, versioned transitions with their history and BotChanged outbox, auto config."""

from __future__ import annotations

import dataclasses
import uuid
from decimal import Decimal as D

import asyncpg
import pytest

from services.trading_engine.bots import lifecycle, store
from services.trading_engine.bots.auto import AutoConfig
from services.trading_engine.bots.brain import BotBrain
from services.trading_engine.bots.model import Holding
from services.trading_engine.bots.strategies import SignalInput
from services.trading_engine.service import SERVICE
from shared.kit.migrations import migrate_postgres
from tests.services.trading_engine.bots_support import T0, bot, market, validated
from tests.support import own_database


@pytest.fixture(scope="module")
async def pool(infra_env):
    _, env, _ = infra_env
    async with own_database(env["DATABASE_URL"], "bots") as url:
        applied = await migrate_postgres(url, SERVICE.name, SERVICE.migrations_dir("postgres"))
        assert "trading-engine/020_bots" in applied
        assert await migrate_postgres(url, SERVICE.name, SERVICE.migrations_dir("postgres")) == []
        pool = await asyncpg.create_pool(url, min_size=1, max_size=3)
        yield pool
        await pool.close()


def fresh(symbol: str = "EURUSD", **kw):
    return dataclasses.replace(bot(symbol=symbol, state="created", **kw), bot_id=uuid.uuid4())


async def test_a_bot_and_its_memory_resume_exactly_after_a_restart(pool):
    b = fresh("GBPUSD", stop_loss="distance", stop_distance="0.0020", trailing="distance", trail_distance="0.0010")
    async with pool.acquire() as conn:
        await store.insert_bot(conn, b, "client:desk")
        lifecycle.apply(b, "start", T0 + 1)
        await store.save_transition(conn, b, "created", "client:desk")
        brain = BotBrain(b)
        signal = validated("enter_long", 1, symbol="GBPUSD")
        assert brain.on_input(SignalInput(signal), Holding(), market()).intent is not None
        brain.on_position(Holding("long", D("0.01"), D("1.25")))
        brain.on_price(D("1.2520"), D("1.2521"))
        await store.save_memory(conn, b)
        loaded = await store.get_bot(conn, "acme", b.bot_id)
    assert loaded == b  # identity, config, state, version, memory (stops, trail, fingerprints)
    again = BotBrain(loaded).on_input(SignalInput(signal), Holding("long", D("0.01"), D("1.25")), market())
    assert again.intent is None and not again.processed  # the redelivered signal is known after the restart


async def test_tenants_are_apart(pool):
    b = fresh("XAUUSD")
    async with pool.acquire() as conn:
        await store.insert_bot(conn, b, "client:desk")
        assert await store.get_bot(conn, "other", b.bot_id) is None
        assert b.bot_id not in [x.bot_id for x in await store.list_bots(conn, "other")]
        assert b.bot_id in [x.bot_id for x in await store.list_bots(conn, "acme")]


async def test_one_active_bot_per_symbol_and_account(pool):
    first = fresh("BTCUSD")
    async with pool.acquire() as conn:
        await store.insert_bot(conn, first, "client:desk")
        with pytest.raises(store.BotExists):
            await store.insert_bot(conn, fresh("BTCUSD"), "client:desk")
        await store.insert_bot(conn, dataclasses.replace(fresh("BTCUSD"), account_id="paper-2"), "client:desk")
        for command in ("start", "stop"):
            before = lifecycle.apply(first, command, T0 + 2)
            await store.save_transition(conn, first, before, "client:desk")
        await store.insert_bot(conn, fresh("BTCUSD"), "client:desk")  # the stopped one no longer holds it
        active = {x.bot_id: x.state for x in await store.active_bots(conn)}
        assert first.bot_id not in active and set(active.values()) <= {"created", "running", "paused"}


async def test_transitions_are_versioned_and_their_events_are_an_outbox(pool):
    b = fresh("EURUSD", lots="0.02")
    async with pool.acquire() as conn:
        await store.mark_published(conn, await store.pending_events(conn, 0, limit=10_000))  # earlier tests' rows
        await store.insert_bot(conn, b, "client:desk")
        for command in ("start", "pause"):
            before = lifecycle.apply(b, command, T0 + b.version)
            await store.save_transition(conn, b, before, "client:desk")
        stale = dataclasses.replace(b, state="stopped", version=3)  # a change decided on version 2, saved late
        with pytest.raises(store.ConcurrentChange):
            await store.save_transition(conn, stale, "paused", "client:other")
        assert [(h["version"], h["from_state"], h["to_state"]) for h in await store.history(conn, b.bot_id)] == [
            (1, None, "created"),
            (2, "created", "running"),
            (3, "running", "paused"),
        ]
        events = await store.pending_events(conn, ts_init=5)
        assert [(e.version, e.state) for e in events] == [(1, "created"), (2, "running"), (3, "paused")]
        assert [e.event_id for e in events] == [lifecycle.bot_event_id(b.bot_id, v) for v in (1, 2, 3)]
        assert events[0].config["lots"] == "0.02" and events[2].actor == "client:desk"
        await store.mark_published(conn, events[:2])
        assert [e.version for e in await store.pending_events(conn, ts_init=5)] == [3]
        await store.mark_published(conn, events[2:])
        assert await store.pending_events(conn, ts_init=5) == []


async def test_the_auto_config_is_versioned_per_tenant(pool):
    async with pool.acquire() as conn:
        assert await store.get_auto(conn, "auto-t") is None
        one = AutoConfig(enabled=True, account_id="paper-1", allowed_symbols=["EURUSD"])
        assert await store.put_auto(conn, "auto-t", one, "client:admin", T0) == 1
        two = one.model_copy(update={"max_concurrent": 2})
        assert await store.put_auto(conn, "auto-t", two, "client:admin", T0 + 1) == 2
        assert await store.get_auto(conn, "auto-t") == (two, 2)
        assert await store.get_auto(conn, "other-t") is None
