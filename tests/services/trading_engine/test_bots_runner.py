"""The engine's running bots on real PostgreSQL: an input becomes one order, a restart (a new runner
loading the store) resumes each bot exactly, a redelivery or a failed submission never costs or
duplicates an order, stops fire from quotes, and the auto mode creates each bot once."""

from __future__ import annotations

import dataclasses
import uuid
from decimal import Decimal as D

import asyncpg
import httpx
import pytest

from services.trading_engine.bots import lifecycle, store
from services.trading_engine.bots.auto import AutoConfig
from services.trading_engine.bots.intents import Intent
from services.trading_engine.bots.model import Bot, BotConfig, Holding, MarketView
from services.trading_engine.bots.routes import BotDesk
from services.trading_engine.bots.runner import BotRunner
from services.trading_engine.service import SERVICE
from shared.auth.scopes import TRADE
from shared.events import BotChanged, Timeframe
from shared.kit.migrations import migrate_postgres
from tests.services.trading_engine.bots_support import T0, bot, bots_api, token, validated, vector
from tests.support import own_database


class Engine:
    """The engine's side: records intents (or refuses them), holds positions, quotes every bot the same."""

    def __init__(self) -> None:
        self.intents: list[Intent] = []
        self.refuse = False
        self.holdings: dict[tuple[str, str, str], Holding] = {}
        self.events: list[BotChanged] = []
        self.clock = T0

    async def submit(self, intent: Intent) -> None:
        if self.refuse:
            raise ConnectionError("the engine refused the order")
        self.intents.append(intent)

    async def holding(self, tenant: str, account_id: str, symbol: str) -> Holding:
        return self.holdings.get((tenant, account_id, symbol), Holding())

    async def view(self, bot: Bot) -> MarketView:
        return MarketView(bid=D("1.10000"), ask=D("1.10010"), equity=D(10_000), atr=D("0.001"))

    async def publish(self, event: BotChanged) -> None:
        self.events.append(event)

    async def account_exists(self, tenant: str, account_id: str) -> bool:
        return account_id.startswith("paper-")

    def now(self) -> int:
        self.clock += 1
        return self.clock


@pytest.fixture(scope="module")
async def pool(infra_env):
    _, env, _ = infra_env
    async with own_database(env["DATABASE_URL"], "botsrun") as url:
        await migrate_postgres(url, SERVICE.name, SERVICE.migrations_dir("postgres"))
        pool = await asyncpg.create_pool(url, min_size=1, max_size=3)
        yield pool
        await pool.close()


def runner(pool, engine: Engine) -> BotRunner:
    return BotRunner(pool, engine, engine, engine.publish, engine.now)


async def running(pool, symbol: str, strategy: str = "signals", tenant: str = "acme", **config) -> Bot:
    b = dataclasses.replace(bot(strategy, symbol, state="created", **config), bot_id=uuid.uuid4(), tenant=tenant)
    async with pool.acquire() as conn:
        await store.insert_bot(conn, b, "client:desk")
        before = lifecycle.apply(b, "start", T0)
        await store.save_transition(conn, b, before, "client:desk")
    return b


async def test_a_signal_is_one_order_and_a_restart_resumes_without_a_second(pool):
    engine = Engine()
    b = await running(pool, "EURUSD", stop_loss="distance", stop_distance="0.0020")
    first = runner(pool, engine)
    assert await first.load() >= 1
    signal = validated("enter_long", 1)
    (intent,) = await first.on_signal(signal)
    assert intent.bot_id == b.bot_id and intent.stop_loss == D("1.09810")  # the ask - 20 pips
    engine.holdings[("acme", "paper-1", "EURUSD")] = Holding("long", D("0.01"), D("1.10010"))
    await first.on_position("acme", "paper-1", "EURUSD", Holding("long", D("0.01"), D("1.10010")))
    # the engine restarts: a new runner loads the store; the signal is redelivered
    second = runner(pool, engine)
    await second.load()
    assert await second.on_signal(signal) == []
    resumed = second.brains[b.bot_id].bot
    assert resumed.memory == first.brains[b.bot_id].bot.memory  # exactly where it was
    assert resumed.memory.stops is not None and resumed.memory.stops.level == D("1.09810")
    # and its stop fires from a quote, once, closing the position
    (close,) = await second.on_quote("EURUSD", D("1.09800"), D("1.09810"))
    assert (close.action, close.side, close.quantity) == ("close", "sell", D("0.01"))
    assert await second.on_quote("EURUSD", D("1.09700"), D("1.09710")) == []
    third = runner(pool, engine)
    await third.load()
    assert third.brains[b.bot_id].bot.memory.stops is None  # fired, and saved so
    assert [i.client_order_id for i in engine.intents].count(intent.client_order_id) == 1


async def test_a_refused_submission_leaves_the_input_new_and_its_retry_is_the_same_order(pool):
    engine = Engine()
    b = await running(pool, "GBPUSD")
    r = runner(pool, engine)
    await r.load()
    signal = validated("enter_short", 1, symbol="GBPUSD")
    engine.refuse = True
    with pytest.raises(ConnectionError):
        await r.on_signal(signal)
    assert r.brains[b.bot_id].bot.memory.last_input_ns == -1  # rolled back in memory
    async with pool.acquire() as conn:
        assert (await store.get_bot(conn, "acme", b.bot_id)).memory.last_input_ns == -1  # and not saved
    engine.refuse = False
    (intent,) = await r.on_signal(signal)  # the redelivery
    again = runner(pool, engine)
    await again.load()
    assert await again.on_signal(signal) == []
    assert intent.side == "sell" and len([i for i in engine.intents if i.bot_id == b.bot_id]) == 1


async def test_rsi_bots_take_their_bars_and_the_higher_timeframe_trend(pool):
    engine = Engine()
    b = await running(pool, "XAUUSD", "rsi", rsi_maturity_bars=2)
    r = runner(pool, engine)
    await r.load()
    assert (
        await r.on_vector(vector(0, None, symbol="XAUUSD", close=1990.0, ema_50=2000.0, timeframe=Timeframe.H1)) == []
    )
    assert r.brains[b.bot_id].bot.memory.trend == "down"
    assert await r.on_vector(vector(1, 20.0, symbol="XAUUSD", close=1990.0)) == []  # immature
    assert await r.on_vector(vector(2, 20.0, symbol="XAUUSD", close=1990.0)) == []  # a long against the trend
    (short,) = await r.on_vector(vector(3, 75.0, symbol="XAUUSD", close=1990.0))
    assert short.action == "open_short"
    again = runner(pool, engine)
    await again.load()
    assert again.brains[b.bot_id].bot.memory.bars == 3 and again.brains[b.bot_id].bot.memory.trend == "down"


async def test_paused_and_stopped_bots_follow_their_lifecycle(pool):
    engine = Engine()
    b = await running(pool, "BTCUSD")
    r = runner(pool, engine)
    await r.load()
    async with pool.acquire() as conn:
        before = lifecycle.apply(b, "pause", T0 + 1)
        await store.save_transition(conn, b, before, "client:desk")
    await r.bot_changed(b)
    assert await r.on_signal(validated("enter_long", 1, symbol="BTCUSD")) == []
    async with pool.acquire() as conn:
        before = lifecycle.apply(b, "stop", T0 + 2)
        await store.save_transition(conn, b, before, "client:desk")
    await r.bot_changed(b)
    assert b.bot_id not in r.brains


async def test_the_auto_mode_creates_each_bot_once_and_publishes_it(pool):
    engine = Engine()
    r = runner(pool, engine)
    await r.load()
    tenant = "auto-co"
    async with pool.acquire() as conn:
        config = AutoConfig(
            enabled=True,
            account_id="paper-1",
            max_concurrent=2,
            min_confidence=0.6,
            bot_config=BotConfig(lots="0.02"),
        )
        await store.put_auto(conn, tenant, config, "client:admin", T0)
    for symbol, confidence in (("EURUSD", 0.9), ("GBPUSD", 0.7), ("XAUUSD", 0.8), ("BTCUSD", 0.5)):
        await r.on_signal(validated("enter_long", 1, symbol=symbol, confidence=confidence))
    made = await r.run_auto(tenant)
    assert sorted(b.symbol for b in made) == ["EURUSD", "XAUUSD"]  # the 2 most confident
    assert all(b.state == "running" and b.config.lots == D("0.02") for b in made)
    assert {(e.bot_id, e.version, e.state) for e in engine.events} >= {
        (b.bot_id, v, s) for b in made for v, s in ((1, "created"), (2, "running"))
    }
    assert await r.run_auto(tenant) == []  # no duplicate bot; no free place either
    async with pool.acquire() as conn:
        mine = await store.list_bots(conn, tenant)
    assert sorted(b.symbol for b in mine) == ["EURUSD", "XAUUSD"]
    # the created bots trade the signals that follow
    sent = await r.on_signal(validated("enter_long", 2, symbol="EURUSD", confidence=0.9))
    (intent,) = [i for i in sent if i.tenant == tenant]  # (other tests' acme bots trade EURUSD too)
    assert intent.quantity == D("0.02") and intent.tenant == tenant


async def test_a_trail_moved_by_a_quote_is_where_a_restart_finds_it(pool):
    engine = Engine()
    b = await running(pool, "EURUSD", tenant="trail-co", trailing="distance", trail_distance="0.0010")
    r = runner(pool, engine)
    await r.load()
    await r.on_signal(validated("enter_long", 7))
    await r.on_position("trail-co", "paper-1", "EURUSD", Holding("long", D("0.01"), D("1.10010")))
    assert await r.on_quote("EURUSD", D("1.10500"), D("1.10510")) == []  # the trail follows to 1.10400
    again = runner(pool, engine)
    await again.load()
    assert again.brains[b.bot_id].bot.memory.stops.level == D("1.10400")


async def test_the_runner_is_the_routes_desk_and_its_bots_follow_the_api(pool):
    engine = Engine()
    r = runner(pool, engine)
    await r.load()
    desk: BotDesk = r  # what the engine hands the routes
    app = bots_api(desk)
    headers = token("desk-co", TRADE)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://te") as http:
        body = {"account_id": "paper-5", "symbol": "GBPUSD", "strategy": "signals", "start": True}
        created = await http.post("/api/v1/bots", headers=headers, json=body)
        assert created.status_code == 201, created.text
        bot_id = uuid.UUID(created.json()["bot_id"])
        assert r.brains[bot_id].bot.state == "running"
        (intent,) = [i for i in await r.on_signal(validated("enter_long", 9, symbol="GBPUSD")) if i.bot_id == bot_id]
        assert intent.account_id == "paper-5" and intent.tenant == "desk-co"
        assert (await http.post(f"/api/v1/bots/{bot_id}/pause", headers=headers)).json()["state"] == "paused"
        assert r.brains[bot_id].bot.state == "paused" and r.brains[bot_id].bot.memory.intents == 1  # memory kept
        assert [i for i in await r.on_signal(validated("enter_short", 10, symbol="GBPUSD")) if i.bot_id == bot_id] == []
        await http.post(f"/api/v1/bots/{bot_id}/stop", headers=headers)
        assert bot_id not in r.brains
    assert [(e.version, e.state) for e in engine.events if e.bot_id == bot_id] == [
        (1, "created"),
        (2, "running"),
        (3, "paused"),
        (4, "stopped"),
    ]


async def test_the_auto_mode_leaves_alone_a_symbol_the_account_already_holds(pool):
    engine = Engine()
    r = runner(pool, engine)
    tenant = "held-co"
    async with pool.acquire() as conn:
        await store.put_auto(conn, tenant, AutoConfig(enabled=True, account_id="paper-3", max_concurrent=5), "a", T0)
    engine.holdings[(tenant, "paper-3", "EURUSD")] = Holding("short", D("1"), D("1.1"))  # opened by hand
    for symbol in ("EURUSD", "GBPUSD"):
        await r.on_signal(validated("enter_long", 1, symbol=symbol, confidence=0.9))
    assert [b.symbol for b in await r.run_auto(tenant)] == ["GBPUSD"]
