"""What the gateway-edge tests share: real uvicorn servers, a real echo upstream, real tokens.

The upstream is a small FastAPI app served by uvicorn on a free port; the gateway
under test is a FastAPI app with the proxy, security headers and (optionally) CORS
installed the way services/api_gateway/app.py installs them, also served by uvicorn.
Tokens are real Ed25519 JWTs from ``shared.auth.mint_access_token``, verified by a
real ``TokenVerifier`` over a ``LocalKeySource``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.telemetry import TelemetryConfig
from joserfc.jwk import KeySet, OKPKey
from pydantic import BaseModel

from services.api_gateway.proxy import GatewayProxy, ProxySettings, install_proxy
from services.api_gateway.security import install_security
from shared.auth import LocalKeySource, TokenVerifier, mint_access_token
from shared.auth.fastapi import install_auth, require
from shared.auth.scopes import MARKET_READ
from shared.kit.app import ServiceApp
from shared.kit.docs import install_docs
from shared.kit.problems import install_problem_handlers
from shared.ratelimit import SlidingWindowLimiter
from tests.support import bound_socket, serve, url_of  # noqa: F401  (re-exported for the tests)

ISSUER = "http://127.0.0.1:8000"
AUDIENCE = "hats-api"


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


class Tokens:
    """A signing key, the verifier that trusts it, and a minting helper."""

    def __init__(self) -> None:
        self.key = OKPKey.generate_key("Ed25519", parameters={"kid": "edge-test"})
        public = OKPKey.import_key(self.key.as_dict(private=False))
        self.keyset = KeySet([public])
        self.verifier = TokenVerifier(ISSUER, AUDIENCE, LocalKeySource(lambda: self.keyset))

    def mint(self, client_id: str = "alpha", scopes: Sequence[str] = (MARKET_READ,), **overrides: Any) -> str:
        args = {
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "subject": f"client:{client_id}",
            "client_id": client_id,
            "tenant": "acme",
            "scopes": list(scopes),
            "ttl_s": 900,
            **overrides,
        }
        return mint_access_token(self.key, **args)[0]

    def bearer(self, client_id: str = "alpha", scopes: Sequence[str] = (MARKET_READ,), **overrides: Any) -> dict:
        return {"Authorization": f"Bearer {self.mint(client_id, scopes, **overrides)}"}


# --- the gateway under test ---------------------------------------------------------------


def gateway_app(
    routes: Mapping[str, str],
    tokens: Tokens,
    *,
    limiter: SlidingWindowLimiter | None = None,
    settings: ProxySettings | None = None,
    cors_origins: Sequence[str] | None = None,
    telemetry: TelemetryConfig | None = None,
) -> tuple[FastAPI, GatewayProxy]:
    """A gateway-shaped FastAPI app: its own ``/oauth2`` stand-in route, ``/docs``, and the proxy."""
    proxy = GatewayProxy(routes, tokens.verifier, limiter, settings or ProxySettings())

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with proxy:
            yield

    app = ServiceApp(
        title="api-gateway",
        lifespan=lifespan,
        docs_url=None,
        telemetry=telemetry or {"tracing": False, "metrics": False, "logs": False},
    )
    install_docs(app)  # as build_app does: Swagger UI served by the gateway itself

    @app.post("/oauth2/token", operation_id="token", tags=["oauth2"])
    async def token() -> Response:
        return JSONResponse({"access_token": "not-a-real-one", "token_type": "Bearer"})

    @app.get("/healthz", operation_id="healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    install_proxy(app, proxy)
    install_security(app, cors_origins=cors_origins)
    return app, proxy
