"""Helpers any test can import (a module, unlike conftest.py): polling, tokens from the gateway,
and serving an ASGI app for real (uvicorn, in the test's event loop)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import uvicorn

from infra import kafka
from shared.events import MarketTick, tick_event_id


async def eventually(check, *, timeout_s: float = 30.0, interval_s: float = 0.2):
    """Poll ``check`` (async, returns a truthy value when done) until it holds; return its value."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s}s (last: {last!r})")


#: The most ticks one ``GET /api/v1/market/ticks`` page holds (database-service's default cap).
TICKS_PAGE = 10_000


async def stored_ticks(http: httpx.AsyncClient, base_url: str, symbol: str) -> dict[str, dict[str, Any]] | None:
    """A symbol's stored ticks by event id, every page of ``GET /api/v1/market/ticks`` at ``base_url``
    (database-service, or the gateway in front of it; ``FINAL``: each tick once). None if a page is
    not answered with 200 (the service may be restarting)."""
    ticks: dict[str, dict[str, Any]] = {}
    start = "2020-01-01T00:00:00Z"
    while True:
        r = await http.get(
            base_url + "/api/v1/market/ticks", params={"symbol": symbol, "start": start, "limit": TICKS_PAGE}
        )
        if r.status_code != 200:
            return None
        page = r.json()
        ticks |= {t["event_id"]: t for t in page}
        if len(page) < TICKS_PAGE:
            return ticks
        # From the last page's last instant again (inclusive): ticks sharing it are not skipped.
        start = dt.datetime.fromtimestamp(page[-1]["time_msc"] / 1000, dt.UTC).isoformat()


async def client_token(gateway: str, client_id: str, client_secret: str, scope: str | None = None) -> str:
    """An access token for a client, from the gateway's token endpoint (client credentials)."""
    form = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
    async with httpx.AsyncClient(timeout=30.0) as client:
        r = await client.post(gateway + "/oauth2/token", data=form, auth=(client_id, client_secret))
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


#: Added to the session's port offset by ``own_infra``. Clear of the fault meshes (+500), the epoch
#: tests' broker (+1500) and the delivery meshes (+2500).
STAND_IN_PORT_SHIFT = 1100


@contextlib.asynccontextmanager
async def own_infra(infra_env: Any, log_dir: Path) -> AsyncIterator[Any]:
    """``infra_env`` with a broker of its own (topics created) and matrix ports shifted by
    ``STAND_IN_PORT_SHIFT``, the session's PostgreSQL kept. For a test module that runs a mesh
    service in-process: the session mesh (started by the integration tests, up for the whole
    run) runs the same service in the same consumer groups on the session's broker, and holds
    the session offset's ports that the module's stand-ins (database-service, the gateway) bind."""
    from shared.bus.broker import ensure_topics

    var, env, session = infra_env
    shifted = session.model_copy(update={"hats_port_offset": session.hats_port_offset + STAND_IN_PORT_SHIFT})
    # A port of its own each time: a module's clients must never meet the previous module's
    # broker's successor on the same address (metadata and group state cached by address).
    port = free_port()
    process = kafka.start_broker(port, log_dir / "kafka.log")
    servers = f"127.0.0.1:{port}"
    shifted = shifted.model_copy(update={"kafka_bootstrap_servers": servers})
    try:
        await ensure_topics(servers)
        yield var, {**env, "KAFKA_BOOTSTRAP_SERVERS": servers}, shifted
    finally:
        process.kill()
        process.wait()


def free_port() -> int:
    """A loopback port nothing listens on (the kernel's pick: it does not hand out one in use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bound_socket() -> socket.socket:
    """A socket bound to a free loopback port, not listening yet: connecting to it is refused
    until it is handed to ``serve`` (so a test can reserve a port for a service that is down)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


@contextlib.asynccontextmanager
async def serve(app: Any, sock: socket.socket | None = None, **config: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn (lifespan on unless ``config`` says otherwise); yields its base URL."""
    options = {"lifespan": "on", "log_level": "warning", "timeout_graceful_shutdown": 1, **config}
    async with serve_config(uvicorn.Config(app, **options), sock) as url:
        yield url


@contextlib.asynccontextmanager
async def serve_config(config: uvicorn.Config, sock: socket.socket | None = None) -> AsyncIterator[str]:
    """Serve with a uvicorn config as given (e.g. ``shared.kit.runner.server_config``'s); yields its base URL."""
    sock = sock or bound_socket()
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()  # surfaces the start-up error
            raise RuntimeError("server exited during start-up")
        await asyncio.sleep(0.01)
    try:
        yield url_of(sock)
    finally:
        server.should_exit = True
        await task


class ServedApp:
    """A test server: ``app`` served for real (uvicorn, no lifespan) inside ``async with``,
    on a port reserved at construction, so ``base_url`` is known before it starts."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.socket = bound_socket()
        self.base_url = url_of(self.socket)
        self._running = contextlib.AsyncExitStack()

    async def __aenter__(self):
        await self._running.enter_async_context(serve(self.app, self.socket, lifespan="off"))
        return self

    async def __aexit__(self, *exc) -> None:
        await self._running.aclose()
        self.socket.close()


def mutations_of(canonical: dict, values: dict[str, Any], *, max_changes: int):
    """A hypothesis strategy: ``canonical`` with up to ``max_changes`` fields replaced by draws
    from ``values`` (field -> strategy), at most one field removed, and sometimes an unknown
    field added. Mostly valid input, for holding a fast parser to the model it stands in for."""
    from hypothesis import strategies as st

    fields = sorted(canonical)

    @st.composite
    def mutated(draw) -> dict:
        event = dict(canonical)
        for name in draw(st.sets(st.sampled_from(fields), max_size=max_changes)):
            event[name] = draw(values[name])
        for name in draw(st.sets(st.sampled_from(fields), max_size=1)):
            del event[name]
        if draw(st.integers(0, 3)) == 0:
            event["extra"] = 1
        return event

    return mutated()


async def create_database(server: str, prefix: str = "t") -> str:
    """A new, empty database on the PostgreSQL server of ``server`` (a URL); returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return urlunsplit(urlsplit(server)._replace(path="/" + name))


async def drop_database(server: str, url: str) -> None:
    """Drop the database of ``url`` (made by ``create_database``), whoever is still connected."""
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{urlsplit(url).path.lstrip("/")}" WITH (FORCE)')
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def own_database(server: str, prefix: str = "t") -> AsyncIterator[str]:
    """``async with own_database(server) as url``: a database of its own, dropped afterwards."""
    url = await create_database(server, prefix)
    try:
        yield url
    finally:
        await drop_database(server, url)


def quote_tick(symbol: str, ms: int, bid: Decimal) -> MarketTick:
    """A valid tick at ``ms`` quoting ``bid`` (ask one pip above), with its deterministic id."""
    ask = bid + Decimal("0.0001")
    return MarketTick(
        event_id=tick_event_id(symbol, ms, bid, ask, None, Decimal(0), 0),
        ts_event=ms * 1_000_000,
        ts_init=1,
        symbol=symbol,
        bid=bid,
        ask=ask,
    )


class OwnBroker:
    """An embedded broker on ``port`` that a test can restart (a new, empty log) or stop."""

    def __init__(self, port: int, log: Path) -> None:
        self.port, self.log = port, log
        self.servers = f"127.0.0.1:{port}"
        self.process = kafka.start_broker(port, log)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.process = kafka.start_broker(self.port, self.log)


@pytest.fixture(scope="module", name="infra_env")
async def own_infra_env(infra_env: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    """``infra_env`` as ``own_infra`` makes it, for the modules of a test directory whose conftest
    imports this: their in-process services run the same consumers as the session mesh's."""
    async with own_infra(infra_env, tmp_path_factory.mktemp("own-kafka")) as env:
        yield env
