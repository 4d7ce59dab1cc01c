"""Harness of the gateway tests, served for real: uvicorn, a fresh PostgreSQL database per module, Tansu.

user-service is not part of these tests: a small real HTTP stand-in serves its internal
``POST /internal/v1/clients/authenticate`` contract (docs/auth.md), verifying the
gateway's service token with ``shared.auth`` against the gateway's published JWKS, as
the real service does. It is the protocol boundary, not a mock of gateway code.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote_plus

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.api_gateway.server import AuthorizationServer
from services.api_gateway.service import SERVICE
from services.api_gateway.settings import GatewaySettings
from shared import topics
from shared.auth import InvalidToken, JwksKeySource, TokenVerifier
from shared.auth.scopes import INTERNAL
from shared.events import TokenRevoked
from shared.kit.app import ServiceApp
from shared.kit.runner import server_config
from shared.settings import PlatformSettings
from tests.support import bound_socket, create_database, drop_database, serve, serve_config

TOKEN_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


# --- the user-service stand-in ---------------------------------------------------------------


@dataclass(frozen=True)
class Registered:
    secret: str
    tenant: str
    scopes: tuple[str, ...]
    grant_types: tuple[str, ...] = ("client_credentials",)


#: The registry the stand-in serves. Secrets include characters that must be form-urlencoded in Basic.
CLIENTS: dict[str, Registered] = {
    "alpha": Registered("alpha-secret", "acme", ("market:read", "trade")),
    "bravo": Registered("bravo:secret %+&=", "acme", ("market:read", "trade"), ("client_credentials", "refresh_token")),
    "charlie": Registered("charlie-secret", "globex", ("market:read",), ("client_credentials", "refresh_token")),
    "root": Registered("root-secret", "platform", ("admin", "market:read", "market:write")),
    "tenant-admin": Registered("ta-secret", "acme", ("admin", "market:read")),
    # Registry says it may hold "internal": the gateway must never grant it.
    "sneaky": Registered("sneaky-secret", "acme", ("market:read", "internal")),
    # user-service takes its time for this one (a hang, as far as the gateway is concerned).
    "slowpoke": Registered("slow-secret", "acme", ("market:read",)),
}
SLOW_CLIENT_DELAY_S = 6.0


@dataclass
class UserServiceStandIn:
    """Counts what it was asked, so tests can tell whether the gateway called it."""

    calls: int = 0
    refused_tokens: int = 0
    callers: list[str] = field(default_factory=list)

    def app(self, verifier_for: Callable[[], TokenVerifier]) -> FastAPI:
        app = FastAPI()

        @app.post("/internal/v1/clients/authenticate")
        async def authenticate(request: Request) -> JSONResponse:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token:
                self.refused_tokens += 1
                return JSONResponse(
                    {"detail": "bearer token required"}, 401, headers={"WWW-Authenticate": 'Bearer realm="hats"'}
                )
            try:
                principal = await verifier_for().verify(token)
            except InvalidToken as exc:
                self.refused_tokens += 1
                challenge = f'Bearer realm="hats", error="invalid_token", error_description="{exc.description}"'
                return JSONResponse({"detail": exc.description}, 401, headers={"WWW-Authenticate": challenge})
            if not principal.has(INTERNAL):
                return JSONResponse({"detail": "requires scope internal"}, 403)
            self.calls += 1
            self.callers.append(principal.subject)
            body = await request.json()
            client = CLIENTS.get(body.get("client_id", ""))
            if body.get("client_id") == "slowpoke":
                await asyncio.sleep(SLOW_CLIENT_DELAY_S)
            if client is None or body.get("client_secret") != client.secret:
                return JSONResponse(
                    {
                        "type": "about:blank",
                        "title": "Unauthorized",
                        "status": 401,
                        "detail": "invalid client credentials",
                    },
                    401,
                    media_type="application/problem+json",
                )
            return JSONResponse(
                {
                    "client_id": body["client_id"],
                    "tenant": client.tenant,
                    "scopes": list(client.scopes),
                    "grant_types": list(client.grant_types),
                }
            )

        return app


# --- the gateway under test ------------------------------------------------------------------


@dataclass
class Gateway:
    """A running gateway, its stand-in user-service and its database."""

    url: str
    app: ServiceApp
    users: UserServiceStandIn
    settings: PlatformSettings
    db_url: str
    var_dir: Path

    @property
    def server(self) -> AuthorizationServer:
        assert self.app.runtime is not None
        state: AuthorizationServer = self.app.runtime.state
        return state


@contextlib.asynccontextmanager
async def running_gateway(
    infra_env,
    gateway_settings: GatewaySettings,
    *,
    user_service_url: str | None = None,
    var_dir: Path | None = None,
    db_url: str | None = None,
    port_offset: int | None = None,
) -> AsyncIterator[Gateway]:
    """A gateway on a free port with a fresh database (unless given) and a user-service stand-in.

    It is the real app (``SERVICE.create_app``) served as ``hats serve`` serves it
    (``shared.kit.runner.server_config``). ``port_offset``: where it looks for the services it
    proxies to (``matrix_ports`` reserves them); by default the session's."""
    _, env, infra = infra_env
    base_db = env["DATABASE_URL"]
    own_db = db_url is None
    db_url = db_url or await create_database(base_db, "gw")  # the gateway migrates it
    var_dir = var_dir or Path(tempfile.mkdtemp(prefix="hats-gw-"))
    gw_sock, us_sock = bound_socket(), bound_socket()
    gw_url = f"http://127.0.0.1:{gw_sock.getsockname()[1]}"
    users = UserServiceStandIn()
    jwks_http = httpx.AsyncClient(timeout=5.0)
    verifier = TokenVerifier(
        gw_url,
        infra.hats_token_audience,
        JwksKeySource(f"{gw_url}/.well-known/jwks.json", jwks_http, min_refresh_interval_s=0),
    )
    settings = PlatformSettings(
        hats_var_dir=var_dir,
        hats_port_offset=infra.hats_port_offset if port_offset is None else port_offset,
        kafka_bootstrap_servers=infra.kafka_servers,
        database_url=db_url,
        hats_token_issuer=gw_url,
        # The gateway refuses a publish timeout that outlives its upstream timeout (short here).
        kafka_publish_timeout_s=gateway_settings.upstream_timeout_s / 2,
    )
    # The app's lifespan points the root logger at the stderr of the moment (pytest's capture,
    # closed at exit); put pytest's handlers back afterwards.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        async with serve(users.app(lambda: verifier), us_sock, timeout_graceful_shutdown=2) as us_url:
            overrides = {"user_service_url": user_service_url or us_url}
            gw_settings = gateway_settings.model_copy(update=overrides)
            app = SERVICE.create_app(platform=settings, settings=gw_settings)
            shipped = server_config(app, settings, loop="none", timeout_graceful_shutdown=2, log_level="warning")
            async with serve_config(shipped, gw_sock) as url:
                yield Gateway(url=url, app=app, users=users, settings=settings, db_url=db_url, var_dir=var_dir)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        await jwks_http.aclose()
        if own_db:
            await drop_database(base_db, db_url)


# --- request helpers ---------------------------------------------------------------------


def basic(client_id: str, secret: str | None = None) -> dict[str, str]:
    """An RFC 6749 §2.3.1 Basic header: id and secret form-urlencoded, then base64."""
    secret = CLIENTS[client_id].secret if secret is None else secret
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


async def token_for(http: httpx.AsyncClient, client_id: str, **form: str) -> dict:
    """A successful client_credentials grant (Basic) for ``client_id``; returns the body."""
    response = await http.post(
        "/oauth2/token", data={"grant_type": "client_credentials", **form}, headers=basic(client_id)
    )
    assert response.status_code == 200, response.text
    return response.json()


def decode_segment(token: str, index: int) -> dict:
    """Header (0) or claims (1) of a compact JWS, unverified."""
    part = token.split(".")[index]
    return orjson.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


class RevocationWatcher:
    """Reads ``auth.revocations.v1`` from the end as it was when the watcher started."""

    def __init__(self, bootstrap: str) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="latest"
        )
        self.seen: list[TokenRevoked] = []

    async def __aenter__(self) -> RevocationWatcher:
        await self._consumer.start()
        partitions = [
            TopicPartition(topics.AUTH_REVOCATIONS, p)
            for p in self._consumer.partitions_for_topic(topics.AUTH_REVOCATIONS) or {0}
        ]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for tp in partitions:
            await self._consumer.position(tp)  # pin the start before the test acts
        return self

    async def __aexit__(self, *exc) -> None:
        await self._consumer.stop()

    async def wait_for(
        self, token_ids: set[str], timeout_s: float = 20.0, *, times: int = 1
    ) -> dict[str, TokenRevoked]:
        """The revocation events of ``token_ids`` (each seen ``times`` times); fails if missing after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s

        def complete() -> bool:
            return all(sum(e.token_id == t for e in self.seen) >= times for t in token_ids)

        while not complete() and loop.time() < deadline:
            batches = await self._consumer.getmany(timeout_ms=200)
            for records in batches.values():
                self.seen.extend(TokenRevoked.model_validate_json(r.value) for r in records)
        assert complete(), f"TokenRevoked missing for some of {token_ids} (seen {len(self.seen)} events)"
        return {e.token_id: e for e in self.seen if e.token_id in token_ids}


def assert_no_store(response: httpx.Response) -> None:
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"


def assert_error(response: httpx.Response, status: int, error: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "error_description"}, body
    assert body["error"] == error, body
    assert_no_store(response)
    return body
