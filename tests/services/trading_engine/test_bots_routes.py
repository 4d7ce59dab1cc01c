"""/api/v1/bots over HTTP on real PostgreSQL with real tokens: lifecycle commands, 409 on an illegal one
or a second bot on a pair, 422 naming the field, 404 across tenants, scopes, BotChanged published."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal as D
from types import SimpleNamespace

import asyncpg
import httpx
import pytest

from services.trading_engine.bots.intents import Intent
from services.trading_engine.bots.model import Bot
from services.trading_engine.service import SERVICE
from shared.auth.scopes import ADMIN, MARKET_READ, TRADE
from shared.events import BotChanged
from shared.kit.migrations import migrate_postgres
from shared.kit.problems import PROBLEM_JSON
from tests.services.trading_engine.bots_support import bots_api, token
from tests.support import own_database


@dataclass
class Desk:
    """The engine's side, as the routes see it: a real pool; intents, events and hooks recorded."""

    pool: asyncpg.Pool
    accounts: set[tuple[str, str]]
    intents: Desk = None  # type: ignore[assignment]
    submitted: list[Intent] = field(default_factory=list)
    published: list[BotChanged] = field(default_factory=list)
    changed: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    clock: int = 1_767_571_200_000_000_000

    def __post_init__(self) -> None:
        self.intents = self

    async def submit(self, intent: Intent) -> None:
        self.submitted.append(intent)

    def now_ns(self) -> int:
        self.clock += 1_000
        return self.clock

    async def account_exists(self, tenant: str, account_id: str) -> bool:
        return (tenant, account_id) in self.accounts

    async def publish(self, event: BotChanged) -> None:
        self.published.append(event)

    async def bot_changed(self, bot: Bot) -> None:
        self.changed.append((bot.bot_id, bot.state))


ACME, ADMIN_ACME, OTHER = token("acme", TRADE), token("acme", TRADE, ADMIN), token("other", TRADE, ADMIN)


@pytest.fixture(scope="module")
async def desk(infra_env):
    _, env, _ = infra_env
    async with own_database(env["DATABASE_URL"], "botsapi") as url:
        await migrate_postgres(url, SERVICE.name, SERVICE.migrations_dir("postgres"))
        pool = await asyncpg.create_pool(url, min_size=1, max_size=3)
        yield Desk(pool, {("acme", "paper-1"), ("acme", "paper-2"), ("other", "paper-9")})
        await pool.close()


@pytest.fixture
async def http(desk):
    app = bots_api(desk)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://trading-engine") as client:
        yield client


async def create(http, symbol="EURUSD", headers=ACME, **body) -> httpx.Response:
    return await http.post(
        "/api/v1/bots", headers=headers, json={"account_id": "paper-1", "symbol": symbol, "strategy": "signals", **body}
    )


def problem(r: httpx.Response, status: int, starts: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM_JSON
    assert r.json()["detail"].startswith(starts), r.json()["detail"]


async def test_the_whole_lifecycle_and_its_events(http, desk):
    r = await create(http, config={"sizing": "fixed_lots", "lots": "0.05"})
    assert r.status_code == 201, r.text
    bot = r.json()
    bot_id = bot["bot_id"]
    assert (bot["state"], bot["version"], bot["config"]["lots"], bot["position"]["side"]) == (
        "created",
        1,
        "0.05",
        "flat",
    )
    states = []
    for command in ("start", "pause", "resume", "stop"):
        r = await http.post(f"/api/v1/bots/{bot_id}/{command}", headers=ACME)
        assert r.status_code == 200, r.text
        states.append((r.json()["state"], r.json()["version"]))
    assert states == [("running", 2), ("paused", 3), ("running", 4), ("stopped", 5)]
    assert (await http.get(f"/api/v1/bots/{bot_id}", headers=ACME)).json()["state"] == "stopped"
    history = (await http.get(f"/api/v1/bots/{bot_id}/history", headers=ACME)).json()
    assert [(h["version"], h["from_state"], h["to_state"]) for h in history] == [
        (1, None, "created"),
        (2, "created", "running"),
        (3, "running", "paused"),
        (4, "paused", "running"),
        (5, "running", "stopped"),
    ]
    assert all(h["actor"] == "client:acme-desk" for h in history)
    problem(await http.get(f"/api/v1/bots/{bot_id}/history", headers=OTHER), 404, "no bot")
    r = await http.delete(f"/api/v1/bots/{bot_id}", headers=ACME)
    assert r.status_code == 200 and r.json()["state"] == "deleted"
    problem(await http.get(f"/api/v1/bots/{bot_id}", headers=ACME), 404, "no bot")
    mine = [e for e in desk.published if str(e.bot_id) == bot_id]
    assert [(e.version, e.state) for e in mine] == [
        (1, "created"),
        (2, "running"),
        (3, "paused"),
        (4, "running"),
        (5, "stopped"),
        (6, "deleted"),
    ]
    assert all(e.actor == "client:acme-desk" and e.tenant == "acme" for e in mine)
    assert [s for i, s in desk.changed if str(i) == bot_id] == [
        "created",
        "running",
        "paused",
        "running",
        "stopped",
        "deleted",
    ]


async def test_illegal_commands_are_409_and_change_nothing(http):
    bot_id = (await create(http, "GBPUSD", start=True)).json()["bot_id"]
    problem(await http.delete(f"/api/v1/bots/{bot_id}", headers=ACME), 409, "cannot delete a running bot")
    problem(await http.post(f"/api/v1/bots/{bot_id}/resume", headers=ACME), 409, "cannot resume a running bot")
    problem(await http.post(f"/api/v1/bots/{bot_id}/start", headers=ACME), 409, "cannot start a running bot")
    got = (await http.get(f"/api/v1/bots/{bot_id}", headers=ACME)).json()
    assert (got["state"], got["version"]) == ("running", 2)
    problem(await create(http, "GBPUSD"), 409, "an active bot already trades GBPUSD")
    assert (await create(http, "GBPUSD", account_id="paper-2")).status_code == 201  # another account
    await http.post(f"/api/v1/bots/{bot_id}/stop", headers=ACME)


async def test_422_names_the_field(http):
    problem(await create(http, "ETHUSD"), 422, "symbol: ETHUSD is not a symbol")
    problem(await create(http, account_id="nope"), 422, "account_id: no account nope")
    problem(await create(http, account_id="paper-9"), 422, "account_id")  # another tenant's account
    r = await create(http, config={"sizing": "fixed_fractional", "risk_fraction": "0.01"})
    problem(r, 422, "body.config")
    assert "stop_loss:" in r.json()["detail"]
    problem(await create(http, strategy="martingale"), 422, "body.strategy")
    problem(await create(http, config={"lots": "-1"}), 422, "body.config.lots")
    problem(await http.get("/api/v1/bots/not-a-uuid", headers=ACME), 422, "path.bot_id")
    problem(await http.get("/api/v1/bots", params={"state": "asleep"}, headers=ACME), 422, "query.state")


async def test_another_tenants_bot_is_404_everywhere(http):
    bot_id = (await create(http, "XAUUSD")).json()["bot_id"]
    problem(await http.get(f"/api/v1/bots/{bot_id}", headers=OTHER), 404, "no bot")
    for command in ("start", "pause", "resume", "stop"):
        problem(await http.post(f"/api/v1/bots/{bot_id}/{command}", headers=OTHER), 404, "no bot")
    problem(await http.delete(f"/api/v1/bots/{bot_id}", headers=OTHER), 404, "no bot")
    assert bot_id not in [b["bot_id"] for b in (await http.get("/api/v1/bots", headers=OTHER)).json()]
    listed = (await http.get("/api/v1/bots", params={"state": "created"}, headers=ACME)).json()
    assert bot_id in [b["bot_id"] for b in listed] and all(b["state"] == "created" for b in listed)
    assert (await http.get(f"/api/v1/bots/{bot_id}", headers=ACME)).json()["state"] == "created"
    await http.delete(f"/api/v1/bots/{bot_id}", headers=ACME)


async def test_scopes(http):
    read_only = token("acme", MARKET_READ)
    assert (await http.get("/api/v1/bots", headers=read_only)).status_code == 403
    assert (await http.get("/api/v1/bots")).status_code == 401
    assert (await http.get("/api/v1/bots/auto", headers=ACME)).status_code == 200
    problem(await http.put("/api/v1/bots/auto", headers=ACME, json={"enabled": False}), 403, "requires scope admin")


async def test_stop_can_close_the_position_with_one_order(http, desk):
    bot_id = (await create(http, "BTCUSD", start=True)).json()["bot_id"]
    async with desk.pool.acquire() as conn:  # the engine filled an entry: the bot holds 0.3 long
        await conn.execute(
            "UPDATE trading.bots SET memory = jsonb_set(jsonb_set(memory, '{position}', '\"long\"'), "
            "'{quantity}', '\"0.3\"') WHERE bot_id = $1",
            uuid.UUID(bot_id),
        )
    r = await http.post(f"/api/v1/bots/{bot_id}/stop", headers=ACME, json={"close_position": True})
    assert r.status_code == 200 and r.json()["state"] == "stopped"
    (intent,) = [i for i in desk.submitted if str(i.bot_id) == bot_id]
    assert (intent.action, intent.side, intent.quantity, intent.symbol) == ("close", "sell", D("0.3"), "BTCUSD")


async def test_the_auto_mode_config(http):
    r = await http.get("/api/v1/bots/auto", headers=ADMIN_ACME)
    assert r.json()["version"] == 0 and r.json()["config"]["enabled"] is False
    problem(await http.put("/api/v1/bots/auto", headers=ADMIN_ACME, json={"enabled": True}), 422, "account_id")
    problem(
        await http.put("/api/v1/bots/auto", headers=ADMIN_ACME, json={"allowed_symbols": ["DOGEUSD"]}),
        422,
        "allowed_symbols",
    )
    problem(
        await http.put("/api/v1/bots/auto", headers=ADMIN_ACME, json={"max_concurrent": -1}), 422, "body.max_concurrent"
    )
    body = {
        "enabled": True,
        "account_id": "paper-1",
        "max_concurrent": 3,
        "allowed_symbols": ["EURUSD"],
        "strategy": "rsi",
    }
    r = await http.put("/api/v1/bots/auto", headers=ADMIN_ACME, json=body)
    assert r.status_code == 200 and r.json()["version"] == 1, r.text
    got = (await http.get("/api/v1/bots/auto", headers=ACME)).json()
    assert got["version"] == 1 and got["config"]["strategy"] == "rsi" and got["config"]["max_concurrent"] == 3
    assert (await http.get("/api/v1/bots/auto", headers=OTHER)).json()["version"] == 0


async def test_the_desk_is_the_running_states_bots_attribute(desk):
    """How the engine wires it: its state (``rt.state``) has a ``bots`` desk; without one, a 500."""

    @dataclass
    class EngineState:
        bots: object

    for state, status in ((EngineState(desk), 200), (object(), 500)):
        app = bots_api(desk)
        app.dependency_overrides.clear()  # the real lookup
        app.runtime = SimpleNamespace(started=True, state=state)  # what the kit's app carries
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://te") as client:
            assert (await client.get("/api/v1/bots", headers=ACME)).status_code == status
