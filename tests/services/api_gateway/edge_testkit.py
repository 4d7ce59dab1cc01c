"""What the gateway-edge tests share: the gateway's real app, real upstreams at the HTTP boundary, real tokens.

The gateway under test is ``services/api_gateway/service.py``'s ``SERVICE`` as the kit
builds it (``gateway_harness.running_gateway``: PostgreSQL, Tansu, its own keyring, served
as ``hats serve`` serves it), so its proxy, security headers, body limit and rate limit are
the shipped ones, configured only through ``GatewaySettings``. The services behind it are
small FastAPI apps served by uvicorn on the ports the gateway routes to (``shared.ports``
plus an offset of their own); they verify the forwarded token as a service does. Tokens
are signed by the gateway's own active key.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import socket
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from gateway_harness import Gateway, running_gateway
from joserfc.jwk import OKPKey
from pydantic import BaseModel

from services.api_gateway.settings import GatewaySettings
from shared import ports
from shared.auth import LocalKeySource, TokenVerifier, mint_access_token
from shared.auth.fastapi import install_auth, require
from shared.auth.scopes import MARKET_READ
from shared.kit.problems import install_problem_handlers
from tests.support import bound_socket, serve, url_of  # noqa: F401  (re-exported for the tests)

# --- the upstream -------------------------------------------------------------------------


class Item(BaseModel):
    name: str
    quantity: int


def echo_upstream(
    service: str, area: str, verifier: TokenVerifier | None = None, item_model: type[BaseModel] = Item
) -> FastAPI:
    """A service owning ``/api/v1/<area>``: echoes requests, and can be slow, fail or stream.

    Its answers carry hop-by-hop fields (Keep-Alive, Proxy-Authenticate and one named in
    Connection) that the gateway must strip. ``app.state.hits`` counts requests.
    """
    app = FastAPI(title=service)
    install_problem_handlers(app)  # as build_app does: refusals are problem+json
    app.state.hits = 0
    if verifier is not None:  # services verify the forwarded token themselves (defense in depth)
        install_auth(app, verifier)
    prefix = f"/api/v1/{area}"

    @app.middleware("http")
    async def count(request: Request, call_next):
        app.state.hits += 1
        return await call_next(request)

    @app.api_route(
        prefix + "/echo{rest:path}",
        methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        include_in_schema=False,
    )
    async def echo(request: Request, rest: str) -> Response:
        body = await request.body()
        return JSONResponse(
            {
                "service": service,
                "method": request.method,
                "raw_path": request.scope["raw_path"].decode("latin-1"),
                "query": request.scope["query_string"].decode("latin-1"),
                "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw],
                "body": base64.b64encode(body).decode(),
            },
            headers={
                "X-Upstream": service,
                "Keep-Alive": "timeout=5",
                "Proxy-Authenticate": "Basic",
                "Connection": "X-Secret-Hop",
                "X-Secret-Hop": "leaks if not stripped",
            },
        )

    @app.get(prefix + "/slow", include_in_schema=False)
    async def slow(s: float) -> Response:
        await asyncio.sleep(s)
        return JSONResponse({"slept": s})

    @app.get(prefix + "/fail", include_in_schema=False)
    async def fail() -> Response:
        return Response(
            b'{"oops": true}', status_code=500, media_type="application/json", headers={"X-Failure": "deliberate"}
        )

    @app.get(prefix + "/cached", include_in_schema=False)
    async def cached() -> Response:
        return JSONResponse({"ok": True}, headers={"Cache-Control": "public, max-age=60"})

    @app.get(prefix + "/big", include_in_schema=False)
    async def big(n: int, chunked: bool = True) -> Response:
        if not chunked:
            return Response(pattern(n), media_type="application/octet-stream")

        async def chunks():
            sent = 0
            while sent < n:
                size = min(100_003, n - sent)  # odd sizes: chunk borders never line up with ours
                yield pattern(size, offset=sent)
                sent += size

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    async def create_item(item):
        return item

    # Set at run time: with postponed annotations FastAPI could not resolve a local name.
    create_item.__annotations__ = {"item": item_model, "return": item_model}
    app.post(prefix + "/items", operation_id="create_item", status_code=201, dependencies=[require(MARKET_READ)])(
        create_item
    )

    @app.get("/internal/v1/secret", operation_id="internal_secret")
    async def internal_secret() -> dict:
        return {"never": "public"}

    return app


def pattern(size: int, offset: int = 0) -> bytes:
    """Deterministic bytes, different at every position of a 251-byte cycle."""
    cycle = bytes(range(251))
    start = offset % 251
    reps = (size + start) // 251 + 1
    return (cycle * reps)[start : start + size]


# --- tokens -------------------------------------------------------------------------------


class GatewayTokens:
    """Access tokens signed by the running gateway's active key, as its token endpoint signs them."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def mint(self, client_id: str | None = None, scopes: Sequence[str] = (MARKET_READ,), **overrides: Any) -> str:
        """A token of ``client_id`` (a new one per call by default: the rate limit is per client)."""
        server = self.gateway.server
        client_id = client_id or f"client-{uuid.uuid4().hex[:12]}"
        args = {
            "issuer": server.issuer,
            "audience": server.audience,
            "subject": f"client:{client_id}",
            "client_id": client_id,
            "tenant": "acme",
            "scopes": list(scopes),
            "ttl_s": 900,
            **overrides,
        }
        return mint_access_token(server.keyring.active.key, **args)[0]

    def bearer(self, client_id: str | None = None, scopes: Sequence[str] = (MARKET_READ,), **overrides: Any) -> dict:
        return {"Authorization": f"Bearer {self.mint(client_id, scopes, **overrides)}"}

    def verifier(self) -> TokenVerifier:
        """What a service behind the gateway verifies the forwarded tokens with (the gateway's keys)."""
        server = self.gateway.server
        return TokenVerifier(server.issuer, server.audience, LocalKeySource(server.keyring.keyset))


def forged(token: str) -> str:
    """``token`` with the signature of another key under the same header: a forgery."""
    other = OKPKey.generate_key("Ed25519")
    header, payload, _ = token.split(".")
    signature = mint_access_token(
        other, issuer="x", audience="x", subject="x", client_id="x", tenant="x", scopes=[], ttl_s=60
    )[0].split(".")[2]
    return f"{header}.{payload}.{signature}"


# --- the gateway under test ---------------------------------------------------------------


def matrix_ports(services: Sequence[str]) -> tuple[int, dict[str, socket.socket]]:
    """A port offset whose ports of ``services`` (the matrix's + offset) are all free, and a
    socket bound (not listening) to each: refused until ``serve`` takes it, so a service is
    down until a test serves it. The offset is the gateway's own, not the session's, so a
    mesh the session runs elsewhere never collides."""
    for _ in range(50):
        offset = random.randrange(30_000, 55_000)
        bound: dict[str, socket.socket] = {}
        try:
            for name in services:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                bound[name] = sock
                sock.bind(("127.0.0.1", ports.service(name).port + offset))
        except OSError:
            for sock in bound.values():
                sock.close()
            continue
        return offset, bound
    raise RuntimeError("no free set of ports for the upstreams")


@dataclass
class EdgeMesh:
    """The gateway, the upstreams it routes to (by area) and tokens it accepts."""

    gateway: Gateway
    tokens: GatewayTokens
    #: Area -> the upstream app serving it (``state.hits`` counts its requests); absent: down.
    upstreams: dict[str, FastAPI]
    #: Area -> the upstream's base URL, and its socket (a test may serve an area that is down).
    routes: dict[str, str]
    sockets: dict[str, socket.socket]

    @property
    def url(self) -> str:
        return self.gateway.url


@contextlib.asynccontextmanager
async def edge_mesh(
    infra_env,
    settings: GatewaySettings,
    *,
    areas: Sequence[str] = ("market", "users"),
    item_models: Mapping[str, type[BaseModel]] | None = None,
) -> AsyncIterator[EdgeMesh]:
    """The real gateway with ``areas`` served by echo upstreams (the other areas of
    ``shared.ports.ROUTES`` are down: their ports refuse connections)."""
    offset, sockets = matrix_ports(list(ports.ROUTES.values()))
    by_area = {area: sockets[service] for area, service in ports.ROUTES.items()}
    try:
        async with running_gateway(infra_env, settings, port_offset=offset) as gateway:
            tokens = GatewayTokens(gateway)
            upstreams = {
                area: echo_upstream(
                    ports.ROUTES[area], area, tokens.verifier(), item_model=(item_models or {}).get(area, Item)
                )
                for area in areas
            }
            async with contextlib.AsyncExitStack() as stack:
                for area, app in upstreams.items():
                    await stack.enter_async_context(serve(app, by_area[area]))
                routes = {area: url_of(sock) for area, sock in by_area.items()}
                yield EdgeMesh(gateway, tokens, upstreams, routes, by_area)
    finally:
        for sock in sockets.values():
            sock.close()
