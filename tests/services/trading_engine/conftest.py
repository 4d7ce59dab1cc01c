"""trading-engine test fixtures: the real service in-process (its migrations, a broker of the
module's own (``own_infra``: the engine's bots read as a consumer group, and a member an earlier
module's engine left behind would hold the group until its session times out), a database of the
module's own) with the test venue, tokens minted for it, and a pool on its database."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from joserfc.jwk import KeySet, OKPKey

from services.trading_engine.service import definition
from services.trading_engine.settings import TradingEngineSettings
from services.trading_engine.state import TradingEngine
from shared.auth import LocalKeySource, RevokedTokens, TokenVerifier, mint_access_token
from shared.kit.service import Overrides
from shared.settings import PlatformSettings
from tests.services.trading_engine.fake_venue import FakeVenue
from tests.support import own_database, own_infra_env  # noqa: F401  (this directory's ``infra_env``)

ALL_SCOPES = ("admin", "trade", "market:read")


@dataclass
class Engine:
    """The running engine: its HTTP client, state, test venue, and a pool on its database."""

    http: httpx.AsyncClient
    state: TradingEngine
    #: The test venue (``FakeVenue``), or the one ``venue`` built.
    venue: Any
    pool: asyncpg.Pool
    mint: Callable[..., dict[str, str]]


@contextlib.asynccontextmanager
async def running_engine(
    platform: PlatformSettings,
    signing_key: OKPKey,
    mint: Callable[..., dict[str, str]],
    held: dict[Any, Any] | None = None,
    venue: Callable[[Any, Any], Any] | None = None,
    **settings: Any,
) -> AsyncIterator[Engine]:
    """The engine; ``held``: what its test venue holds when it starts (a venue that outlived the engine);
    ``venue(rt, sink)``: another paper venue than the test one."""
    venues: dict[str, Any] = {}

    def factory(rt: Any, sink: Any) -> dict[str, Any]:
        if venue is not None:
            venues["paper"] = venue(rt, sink)
        else:
            venues["paper"] = FakeVenue(sink)
            venues["paper"].held.update(held or {})
        return dict(venues)

    keys = KeySet([signing_key])
    verifier = TokenVerifier(
        issuer=platform.token_issuer,
        audience=platform.hats_token_audience,
        keys=LocalKeySource(lambda: keys),
        revoked=RevokedTokens(),
    )
    # Reconciliation is driven by the tests (one round at start, then not for an hour).
    defaults: dict[str, Any] = {"reconcile_interval_s": 3600.0, "outbox_sweep_interval_s": 3600.0}
    app = definition(factory, risk_gate=False).create_app(
        platform=platform,
        settings=TradingEngineSettings(**{**defaults, **settings}),
        overrides=Overrides(token_verifier=verifier),
    )
    async with app.router.lifespan_context(app):
        assert platform.database_url is not None
        pool = await asyncpg.create_pool(platform.database_url.get_secret_value(), min_size=1, max_size=4)
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://trading-engine") as http:
                assert app.runtime is not None
                yield Engine(http, app.runtime.state, venues["paper"], pool, mint)
        finally:
            await pool.close()


@pytest.fixture(scope="module")
async def engine_db(infra_env) -> AsyncIterator[str]:
    _, env, _ = infra_env
    async with own_database(env["DATABASE_URL"], "te") as url:
        yield url


@pytest.fixture(scope="module")
def signing_key() -> OKPKey:
    key = OKPKey.generate_key("Ed25519", private=True)
    key.ensure_kid()
    return key


@pytest.fixture(scope="module")
def engine_platform(infra_env, engine_db, tmp_path_factory) -> PlatformSettings:
    _, _, session = infra_env
    return PlatformSettings(
        hats_var_dir=tmp_path_factory.mktemp("trading-engine-var"),
        hats_port_offset=session.hats_port_offset,
        kafka_bootstrap_servers=session.kafka_servers,
        database_url=engine_db,
    )


@pytest.fixture(scope="module")
def mint(signing_key, engine_platform) -> Callable[..., dict[str, str]]:
    """``mint(tenant, scopes)`` -> an Authorization header the test engine accepts."""

    def header(tenant: str, scopes: tuple[str, ...] = ALL_SCOPES) -> dict[str, str]:
        client_id = f"test-{tenant}-{uuid.uuid4().hex[:6]}"
        token, _ = mint_access_token(
            signing_key,
            issuer=engine_platform.token_issuer,
            audience=engine_platform.hats_token_audience,
            subject=f"client:{client_id}",
            client_id=client_id,
            tenant=tenant,
            scopes=scopes,
            ttl_s=600,
        )
        return {"Authorization": f"Bearer {token}"}

    return header


@pytest.fixture(scope="module")
async def engine(engine_platform, signing_key, mint) -> AsyncIterator[Engine]:
    async with running_engine(engine_platform, signing_key, mint) as running:
        yield running


@pytest.fixture
def start_engine(engine_platform, signing_key, mint):
    """``async with start_engine(held=..., **settings) as engine``: another engine on the module's
    database, its venue holding ``held``."""
    return lambda **settings: running_engine(engine_platform, signing_key, mint, **settings)


async def new_account(engine: Engine, tenant: str, balance: str = "100000") -> str:
    """A paper account of ``tenant`` holding ``balance`` USD; its id."""
    r = await engine.http.post(
        "/api/v1/accounts", json={"venue": "paper", "name": "test", "balance": balance}, headers=engine.mint(tenant)
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])
