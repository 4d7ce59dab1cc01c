"""The risk API on a small app over the real PostgreSQL: limits versioned per tenant and account
(scope admin, 422 naming the field), kill switches tripped with trade and reset with admin by a named
person; tenant isolation (404), platform scopes for platform admins only, events only after commit."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from joserfc.jwk import KeySet, OKPKey

from services.trading_engine.risk.kill_switch import KillSwitch, KillSwitchBoard, OrderFacts
from services.trading_engine.risk.limits import LimitsBook
from services.trading_engine.risk.routes import risk_router
from services.trading_engine.service import SERVICE
from shared.auth import LocalKeySource, RevokedTokens, TokenVerifier, mint_access_token
from shared.auth.fastapi import install_auth
from shared.events import Event, KillSwitchChanged, RiskLimitsChanged
from shared.kit.migrations import migrate_postgres
from shared.kit.problems import PROBLEM_JSON, install_problem_handlers
from tests.services.trading_engine.risk_support import WEDNESDAY_NS
from tests.support import own_database

ISSUER, AUDIENCE = "http://127.0.0.1:8000", "hats-api"
KEY = OKPKey.generate_key("Ed25519", parameters={"kid": "k1"})


@dataclass
class Backend:
    """The engine's side, as the routes see it: real transactions, an outbox list, a few open orders."""

    pool: asyncpg.Pool
    accounts: set[tuple[str, str]]
    open_orders: list[OrderFacts]
    recorded: list[Event] = field(default_factory=list)
    published: list[Event] = field(default_factory=list)
    board: KillSwitchBoard = field(default_factory=KillSwitchBoard)
    book: LimitsBook = field(default_factory=LimitsBook)
    now: int = WEDNESDAY_NS

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn

    async def record(self, conn: asyncpg.Connection, events: Sequence[Event]) -> None:
        assert conn.is_in_transaction()
        self.recorded.extend(events)

    async def committed(self, events: Sequence[Event]) -> None:
        self.published.extend(events)
        for e in events:
            if isinstance(e, KillSwitchChanged):
                self.board.apply(e)
            elif isinstance(e, RiskLimitsChanged):
                self.book.apply(e)

    async def account_exists(self, conn: asyncpg.Connection, tenant: str, account_id: str) -> bool:
        return (tenant, account_id) in self.accounts

    async def cancel_in_scope(self, conn: asyncpg.Connection, switch: KillSwitch) -> int:
        canceled = [o for o in self.open_orders if switch.covers(o)]
        self.open_orders = [o for o in self.open_orders if not switch.covers(o)]
        return len(canceled)

    def now_ns(self) -> int:
        self.now += 1_000_000_000
        return self.now


@pytest.fixture(scope="module")
async def pool(infra_env):
    _, env, _ = infra_env
    async with own_database(env["DATABASE_URL"], "riskapi") as url:
        await migrate_postgres(url, SERVICE.name, SERVICE.migrations_dir("postgres"))
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        yield pool
        await pool.close()


@pytest.fixture
async def api(pool):
    backend = Backend(
        pool,
        accounts={("acme", "acc-1"), ("acme", "acc-2"), ("zeta", "z-1")},
        open_orders=[
            OrderFacts("acme", "acc-1", "paper", "rsi"),
            OrderFacts("acme", "acc-1", "paper", None),
            OrderFacts("acme", "acc-2", "paper", "rsi"),
            OrderFacts("zeta", "z-1", "mt5", "rsi"),
        ],
    )
    app = FastAPI()
    install_problem_handlers(app)
    install_auth(app, TokenVerifier(ISSUER, AUDIENCE, LocalKeySource(lambda: KeySet([KEY])), revoked=RevokedTokens()))
    app.include_router(risk_router(lambda: backend))
    # every test gets fresh tenants: the database is shared by the module
    suffix = uuid.uuid4().hex[:6]
    rename = {"acme": f"acme-{suffix}", "zeta": f"zeta-{suffix}"}
    backend.accounts = {(rename[t], a) for t, a in backend.accounts}
    backend.open_orders = [OrderFacts(rename[o.tenant], o.account_id, o.venue, o.strategy) for o in backend.open_orders]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://engine") as client:
        yield client, backend, rename


def auth(tenant: str, *scopes: str, subject: str = "client:desk") -> dict[str, str]:
    token = mint_access_token(
        KEY,
        issuer=ISSUER,
        audience=AUDIENCE,
        subject=subject,
        client_id="desk",
        tenant=tenant,
        scopes=scopes,
        ttl_s=900,
    )[0]
    return {"Authorization": f"Bearer {token}"}


def problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM_JSON
    return r.json()


async def test_tenant_limits_are_versioned_and_every_change_is_an_event(api):
    client, backend, names = api
    acme = names["acme"]
    admin = auth(acme, "admin")
    r = await client.get("/api/v1/risk/limits", headers=admin)
    assert r.status_code == 200 and r.json()["version"] == 0 and r.json()["limits"]["price_collar_bps"] == 500
    r = await client.put(
        "/api/v1/risk/limits", headers=admin, json={"limits": {"max_order_lots": "5"}, "reason": "tighter"}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["version"], r.json()["limits"]["max_order_lots"], r.json()["actor"]) == (1, "5", "client:desk")
    r = await client.put("/api/v1/risk/limits", headers=admin, json={"limits": {}, "reason": "back to defaults"})
    assert r.json()["version"] == 2 and r.json()["limits"]["max_order_lots"] == "50"
    assert [e.version for e in backend.published if isinstance(e, RiskLimitsChanged)] == [1, 2]
    assert backend.recorded == backend.published
    assert (await client.get("/api/v1/risk/limits", headers=admin)).json()["version"] == 2


async def test_account_overrides_merge_over_the_tenant(api):
    client, backend, names = api
    acme = names["acme"]
    admin = auth(acme, "admin")
    await client.put("/api/v1/risk/limits", headers=admin, json={"limits": {"max_order_lots": "5"}, "reason": "r"})
    r = await client.put(
        "/api/v1/risk/limits/accounts/acc-1",
        headers=admin,
        json={"limits": {"max_order_lots": "1", "price_collar_bps": None}, "reason": "new trader"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["version"], body["tenant_version"], body["account_id"]) == (1, 1, "acc-1")
    assert body["limits"] == {"max_order_lots": "1", "price_collar_bps": None}
    assert body["effective"]["max_order_lots"] == "1" and body["effective"]["price_collar_bps"] is None
    assert backend.book.limits_for(acme, "acc-1").price_collar_bps is None
    assert backend.book.limits_for(acme, "acc-2").price_collar_bps == 500
    other = (await client.get("/api/v1/risk/limits/accounts/acc-2", headers=admin)).json()
    assert other["version"] == 0 and other["effective"]["max_order_lots"] == "5"


async def test_bad_limits_are_422_naming_the_field_and_store_nothing(api):
    client, backend, names = api
    admin = auth(names["acme"], "admin")
    for limits, where in [
        ({"max_order_value": "-1"}, "limits.max_order_value"),
        ({"max_order_value": 10.5}, "limits.max_order_value"),
        ({"bogus": 1}, "limits.bogus"),
    ]:
        body = problem(
            await client.put("/api/v1/risk/limits", headers=admin, json={"limits": limits, "reason": "r"}), 422
        )
        assert body["detail"].startswith("body." + where), body
    body = problem(await client.put("/api/v1/risk/limits", headers=admin, json={"limits": {}}), 422)
    assert "reason" in body["detail"]
    assert backend.published == [] and backend.recorded == []


async def test_limits_need_admin_and_stay_in_the_tenant(api):
    client, _, names = api
    acme, zeta = names["acme"], names["zeta"]
    problem(await client.get("/api/v1/risk/limits", headers=auth(acme, "trade")), 403)
    problem(await client.get("/api/v1/risk/limits/accounts/z-1", headers=auth(acme, "admin")), 404)
    problem(await client.get(f"/api/v1/risk/limits?tenant={zeta}", headers=auth(acme, "admin")), 404)
    problem(
        await client.put(
            "/api/v1/risk/limits/accounts/z-1", headers=auth(acme, "admin"), json={"limits": {}, "reason": "r"}
        ),
        404,
    )
    r = await client.get(f"/api/v1/risk/limits/accounts/z-1?tenant={zeta}", headers=auth("platform", "admin"))
    assert r.status_code == 200 and r.json()["tenant"] == zeta


async def test_trip_cancels_in_scope_blocks_and_reset_needs_admin_person_and_reason(api):
    client, backend, names = api
    acme = names["acme"]
    r = await client.post(
        "/api/v1/kill-switches",
        headers=auth(acme, "trade"),
        json={"scope": "account", "target": "acc-1", "reason": "runaway bot"},
    )
    assert r.status_code == 201, r.text
    switch = r.json()
    assert (switch["state"], switch["canceled_orders"], switch["actor"]) == ("tripped", 2, "client:desk")
    assert backend.board.is_blocked(OrderFacts(acme, "acc-1", "paper")) is not None
    assert backend.board.is_blocked(OrderFacts(acme, "acc-2", "paper")) is None
    assert [o.account_id for o in backend.open_orders if o.tenant == acme] == ["acc-2"]
    # tripping the same scope again changes nothing
    again = await client.post(
        "/api/v1/kill-switches",
        headers=auth(acme, "trade"),
        json={"scope": "account", "target": "acc-1", "reason": "x"},
    )
    assert again.status_code == 200 and again.json()["switch_id"] == switch["switch_id"]
    reset_url = f"/api/v1/kill-switches/{switch['switch_id']}/reset"
    problem(await client.post(reset_url, headers=auth(acme, "trade"), json={"person": "Al", "reason": "ok"}), 403)
    for body in ({"reason": "ok"}, {"person": "", "reason": "ok"}, {"person": "  ", "reason": "ok"}, {"person": "Al"}):
        problem(await client.post(reset_url, headers=auth(acme, "admin"), json=body), 422)
    r = await client.post(reset_url, headers=auth(acme, "admin"), json={"person": "Alice Admin", "reason": "bot fixed"})
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["reset_by"], r.json()["reset_reason"]) == ("reset", "Alice Admin", "bot fixed")
    assert backend.board.is_blocked(OrderFacts(acme, "acc-1", "paper")) is None
    problem(await client.post(reset_url, headers=auth(acme, "admin"), json={"person": "Al", "reason": "again"}), 409)
    changes = [(e.state, e.actor) for e in backend.published if isinstance(e, KillSwitchChanged)]
    assert changes == [("tripped", "client:desk"), ("reset", "Alice Admin")]


async def test_switches_are_tenant_scoped_and_platform_scopes_need_a_platform_admin(api):
    client, backend, names = api
    acme, zeta = names["acme"], names["zeta"]
    r = await client.post(
        "/api/v1/kill-switches", headers=auth(zeta, "trade"), json={"scope": "strategy", "target": "rsi", "reason": "x"}
    )
    zeta_switch = r.json()["switch_id"]
    assert r.status_code == 201 and r.json()["canceled_orders"] == 1  # zeta's rsi order, not acme's
    problem(await client.get(f"/api/v1/kill-switches/{zeta_switch}", headers=auth(acme, "trade")), 404)
    problem(
        await client.post(
            f"/api/v1/kill-switches/{zeta_switch}/reset",
            headers=auth(acme, "admin"),
            json={"person": "A", "reason": "r"},
        ),
        404,
    )
    assert zeta_switch not in [
        s["switch_id"] for s in (await client.get("/api/v1/kill-switches", headers=auth(acme, "trade"))).json()
    ]
    problem(
        await client.post(
            "/api/v1/kill-switches",
            headers=auth(acme, "trade"),
            json={"scope": "account", "target": "z-1", "reason": "x"},
        ),
        404,
    )
    for scope, target in (("all", None), ("venue", "mt5")):
        problem(
            await client.post(
                "/api/v1/kill-switches",
                headers=auth(acme, "admin", "trade"),
                json={"scope": scope, "target": target, "reason": "x"},
            ),
            403,
        )
    problem(
        await client.post(
            "/api/v1/kill-switches",
            headers=auth(acme, "trade"),
            json={"scope": "venue", "target": "nyse", "reason": "x"},
        ),
        403,
    )
    r = await client.post(
        "/api/v1/kill-switches",
        headers=auth("platform", "admin", "trade"),
        json={"scope": "venue", "target": "mt5", "reason": "terminal down"},
    )
    assert r.status_code == 201 and r.json()["tenant"] == "platform"
    venue_switch = r.json()["switch_id"]
    try:
        problem(
            await client.post(
                "/api/v1/kill-switches",
                headers=auth("platform", "admin", "trade"),
                json={"scope": "venue", "target": "nyse", "reason": "x"},
            ),
            422,
        )
        # every tenant sees the platform's switch (it blocks its orders), only a platform admin resets it
        listed = (await client.get("/api/v1/kill-switches?state=tripped", headers=auth(acme, "trade"))).json()
        assert venue_switch in [s["switch_id"] for s in listed]
        assert backend.board.is_blocked(OrderFacts(acme, "acc-2", "mt5")) is not None
        problem(
            await client.post(
                f"/api/v1/kill-switches/{venue_switch}/reset",
                headers=auth(acme, "admin"),
                json={"person": "A", "reason": "r"},
            ),
            403,
        )
    finally:
        r = await client.post(
            f"/api/v1/kill-switches/{venue_switch}/reset",
            headers=auth("platform", "admin"),
            json={"person": "Platform Ops", "reason": "terminal back"},
        )
        assert r.status_code == 200, r.text
