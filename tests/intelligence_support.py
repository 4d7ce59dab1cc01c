"""Helpers of the intelligence services' tests (ai-orchestration, pattern-validator): the real app
in-process on the session's broker and a database of its own, tokens it accepts, and feeds of
what it publishes."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Generic, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from joserfc.jwk import KeySet, OKPKey

from shared.auth import LocalKeySource, RevokedTokens, TokenVerifier, mint_access_token
from shared.events import Event, encode_event
from shared.kit.migrations import migrate_postgres
from shared.kit.service import Overrides, ServiceDefinition
from shared.settings import PlatformSettings
from tests.support import eventually, own_database

E = TypeVar("E", bound=Event)


def new_key() -> OKPKey:
    key = OKPKey.generate_key("Ed25519", private=True)
    key.ensure_kid()
    return key


def mint(key: OKPKey, platform: PlatformSettings, scopes: Sequence[str] = ("market:read",)) -> str:
    """An access token signed by ``key`` for ``platform``'s issuer and audience, with ``scopes``."""
    token, _ = mint_access_token(
        key,
        issuer=platform.token_issuer,
        audience=platform.hats_token_audience,
        subject="client:intelligence-tests",
        client_id="intelligence-tests",
        tenant="platform",
        scopes=scopes,
        ttl_s=600,
    )
    return token


def bearer(key: OKPKey, platform: PlatformSettings, scopes: Sequence[str] = ("market:read",)) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(key, platform, scopes)}"}


def verifier_trusting(key: OKPKey, platform: PlatformSettings) -> TokenVerifier:
    """A token verifier for ``platform`` that trusts ``key`` (the tests' stand-in for the gateway's JWKS)."""
    keys = KeySet([key])
    return TokenVerifier(
        issuer=platform.token_issuer,
        audience=platform.hats_token_audience,
        keys=LocalKeySource(lambda: keys),
        revoked=RevokedTokens(),
    )


@contextlib.asynccontextmanager
async def service_database(infra_env, definition: ServiceDefinition) -> AsyncIterator[str]:
    """A fresh database with ``definition``'s migrations applied, dropped on exit."""
    _, env, _ = infra_env
    async with own_database(env["DATABASE_URL"], definition.name.replace("-", "")[:8]) as url:
        await migrate_postgres(url, definition.name, definition.migrations_dir("postgres"))
        yield url


def platform_of(infra_env, database_url: str, var_dir) -> PlatformSettings:
    _, _, session = infra_env
    return PlatformSettings(
        hats_var_dir=var_dir,
        hats_port_offset=session.hats_port_offset,
        kafka_bootstrap_servers=session.kafka_servers,
        database_url=database_url,
    )


@contextlib.asynccontextmanager
async def running(
    definition: ServiceDefinition,
    platform: PlatformSettings,
    settings: Any,
    key: OKPKey,
    wall_clock: Callable[[], float] | None = None,
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The real app (lifespan: migrations, broker, consumers), ready, with a verifier trusting ``key``."""
    verifier = verifier_trusting(key, platform)
    app = definition.create_app(
        platform=platform, settings=settings, overrides=Overrides(token_verifier=verifier, wall_clock=wall_clock)
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{definition.name}") as http:

            async def ready() -> bool:
                return (await http.get("/readyz")).status_code == 200

            await eventually(ready, timeout_s=30)
            yield http, app


class Feed(Generic[E]):
    """Every event of ``kind`` on the session's broker from now on (read from the topic's end)."""

    def __init__(self, kind: type[E], servers: str) -> None:
        self.kind = kind
        self.events: list[E] = []
        self._consumer = AIOKafkaConsumer(kind.TOPIC, bootstrap_servers=servers, auto_offset_reset="latest")
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Feed[E]:
        await self._consumer.start()
        while not self._consumer.assignment():
            await asyncio.sleep(0.05)
        for tp in self._consumer.assignment():
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._follow())
        return self

    async def _follow(self) -> None:
        async for record in self._consumer:
            self.events.append(self.kind.model_validate_json(record.value))

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    def where(self, predicate: Callable[[E], bool]) -> list[E]:
        return [e for e in self.events if predicate(e)]

    async def wait_for(self, predicate: Callable[[E], bool], *, timeout_s: float = 20.0) -> E:
        async def found() -> E | None:
            hits = self.where(predicate)
            return hits[0] if hits else None

        result: E = await eventually(found, timeout_s=timeout_s)
        return result


class Producer:
    """Publishes events as their producers would (key = partition key, value = the event's JSON)."""

    def __init__(self, servers: str) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=servers)

    async def __aenter__(self) -> Producer:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def send(self, *events: Event) -> None:
        for event in events:
            await self._producer.send_and_wait(event.TOPIC, encode_event(event), key=event.partition_key())

    async def send_raw(self, topic: str, value: bytes, key: bytes = b"X") -> None:
        await self._producer.send_and_wait(topic, value, key=key)


def unique_symbol(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6].upper()}"
