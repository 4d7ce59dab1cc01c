"""user-service test fixtures: a fresh database per module, tokens, the app in-process, the event feed.

The database and the broker are the session's real embedded PostgreSQL and Tansu
(``infra_env``); each module gets its own database so modules cannot see each
other's tenants or bootstrap state.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from joserfc.jwk import KeySet, OKPKey

from services.user_service.repository import Store
from services.user_service.service import SERVICE
from services.user_service.settings import UserServiceSettings
from shared import topics
from shared.auth import LocalKeySource, RevokedTokens, TokenVerifier, mint_access_token
from shared.events import DirectoryChanged
from shared.kit.migrations import migrate_postgres
from shared.kit.service import Overrides
from shared.settings import PlatformSettings
from tests.support import own_database

ADMIN_SCOPES = ("admin", "compliance", "market:read", "trade")


@contextlib.asynccontextmanager
async def fresh_database(server: str) -> AsyncIterator[str]:
    """A new database with user-service's schema on the server of ``server`` (a URL); dropped on exit."""
    async with own_database(server, "us") as url:
        await migrate_postgres(url, SERVICE.name, SERVICE.migrations_dir("postgres"))
        yield url


@pytest.fixture(scope="module")
async def user_db(infra_env) -> AsyncIterator[str]:
    """URL of this module's own database on the session's PostgreSQL."""
    _, env, _ = infra_env
    async with fresh_database(env["DATABASE_URL"]) as url:
        yield url


@pytest.fixture(scope="module")
async def store(user_db) -> AsyncIterator[Store]:
    pool = await asyncpg.create_pool(user_db, min_size=1, max_size=8)
    yield Store(pool)
    await pool.close()


@pytest.fixture(scope="module")
def signing_key() -> OKPKey:
    key = OKPKey.generate_key("Ed25519", private=True)
    key.ensure_kid()
    return key


@pytest.fixture(scope="module")
def test_platform(infra_env, user_db, tmp_path_factory) -> PlatformSettings:
    """Platform settings of the in-process app: the session's broker, this module's database."""
    _, _, session = infra_env
    return PlatformSettings(
        hats_var_dir=tmp_path_factory.mktemp("user-service-var"),
        hats_port_offset=session.hats_port_offset,
        kafka_bootstrap_servers=session.kafka_servers,
        database_url=user_db,
    )


@pytest.fixture(scope="module")
def mint(signing_key, test_platform) -> Callable[..., dict[str, str]]:
    """``mint(tenant, scopes)`` -> an Authorization header with a token the test app accepts."""

    def mint_header(tenant: str, scopes=ADMIN_SCOPES, client_id: str | None = None) -> dict[str, str]:
        client_id = client_id or f"test-{tenant}-{uuid.uuid4().hex[:6]}"
        token, _ = mint_access_token(
            signing_key,
            issuer=test_platform.token_issuer,
            audience=test_platform.hats_token_audience,
            subject=f"client:{client_id}",
            client_id=client_id,
            tenant=tenant,
            scopes=scopes,
            ttl_s=600,
        )
        return {"Authorization": f"Bearer {token}"}

    return mint_header


@dataclass
class RunningApp:
    http: httpx.AsyncClient
    app: object
    platform: PlatformSettings

    @property
    def var_dir(self) -> Path:
        return self.platform.hats_var_dir


@contextlib.asynccontextmanager
async def running_app(platform: PlatformSettings, signing_key: OKPKey, settings: UserServiceSettings | None = None):
    """The real app (real lifespan: migrations, bootstrap, broker), with a verifier trusting ``signing_key``."""
    keys = KeySet([signing_key])
    verifier = TokenVerifier(
        issuer=platform.token_issuer,
        audience=platform.hats_token_audience,
        keys=LocalKeySource(lambda: keys),
        revoked=RevokedTokens(),
    )
    app = SERVICE.create_app(
        platform=platform,
        settings=settings or UserServiceSettings(),
        overrides=Overrides(token_verifier=verifier),
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://user-service") as http:
            yield RunningApp(http, app, platform)


@pytest.fixture(scope="module")
async def user_app(test_platform, signing_key) -> AsyncIterator[RunningApp]:
    async with running_app(test_platform, signing_key) as running:
        yield running


class EventFeed:
    """Every ``DirectoryChanged`` on the session's broker since the feed started (from the earliest offset)."""

    def __init__(self, servers: str) -> None:
        self.events: list[DirectoryChanged] = []
        self._consumer = AIOKafkaConsumer(
            topics.DIRECTORY_CHANGES, bootstrap_servers=servers, auto_offset_reset="earliest", enable_auto_commit=False
        )
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        async for record in self._consumer:
            self.events.append(DirectoryChanged.model_validate_json(record.value))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def wait_for(self, predicate, *, timeout_s: float = 20.0) -> DirectoryChanged:
        """The first event matching ``predicate``, waiting for it to arrive."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            for event in self.events:
                if predicate(event):
                    return event
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no matching DirectoryChanged within {timeout_s}s; saw {len(self.events)}")
            await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
async def directory_events(infra_env) -> AsyncIterator[EventFeed]:
    _, _, session = infra_env
    feed = EventFeed(session.kafka_servers)
    await feed.start()
    yield feed
    await feed.stop()


@pytest.fixture(scope="module")
def new_database(infra_env):
    """``async with new_database() as url``: a database of its own for one test."""
    _, env, _ = infra_env
    return lambda: fresh_database(env["DATABASE_URL"])


@pytest.fixture(scope="module")
def start_app(signing_key):
    """``async with start_app(platform, settings) as running``: the app on settings of the test's choosing."""
    return lambda platform, settings=None: running_app(platform, signing_key, settings)
