"""What the kit refuses before any route reads a request (``shared.kit.request_guard``), and what
``/readyz`` tells an unauthenticated caller, on a kit-built app served by uvicorn."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import APIRouter
from joserfc.jwk import KeySet, OKPKey
from pydantic import BaseModel

from shared.auth import LocalKeySource, Principal, RevokedTokens, TokenVerifier, mint_access_token
from shared.auth.fastapi import install_auth, require
from shared.auth.scopes import MARKET_READ, MARKET_WRITE
from shared.kit.app import build_app
from shared.settings import PlatformSettings
from tests.shared.test_auth_fastapi import AUDIENCE, ISSUER, KEY, token
from tests.support import serve

#: Body bytes the app behind the outermost middleware read, per request: FastAPI reads and
#: parses a body before it runs the route's dependencies, so an unauthenticated body must not get there.
READ: list[int] = []


class Batch(BaseModel):
    name: str


class BodyReads:
    """Outermost middleware of the test app: records how much of each request's body was read inside."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        index = len(READ)
        READ.append(0)

        async def counted():
            message = await receive()
            READ[index] += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


router = APIRouter()


@router.post("/api/v1/things")
async def create(batch: Batch, principal: Principal = require(MARKET_WRITE)) -> dict:
    return {"name": batch.name, "client_id": principal.client_id}


@router.get("/api/v1/things")
async def read(principal: Principal = require(MARKET_READ)) -> dict:
    return {"client_id": principal.client_id}


def kit_app(tmp_path, *, with_auth: bool = True):
    app = build_app("performance-analytics", routers=[router], settings=PlatformSettings(hats_var_dir=tmp_path))
    if with_auth:
        revoked = RevokedTokens()
        install_auth(app, TokenVerifier(ISSUER, AUDIENCE, LocalKeySource(lambda: KeySet([KEY])), revoked=revoked))
    app.add_middleware(BodyReads)
    return app


@pytest.fixture
async def http(tmp_path):
    READ.clear()
    async with serve(kit_app(tmp_path)) as url, httpx.AsyncClient(base_url=url, timeout=10.0) as client:
        yield client


def assert_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    return body


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_two_authorization_headers_are_refused_before_any_route(http, method):
    good, other = token(MARKET_READ, MARKET_WRITE), token(MARKET_READ, MARKET_WRITE, client_id="other")
    headers = httpx.Headers([("Authorization", f"Bearer {good}"), ("Authorization", f"Bearer {other}")])
    response = await http.request(method, "/api/v1/things", headers=headers, json={"name": "x"})
    assert assert_problem(response, 400)["detail"] == "more than one Authorization header"
    assert READ == [0]
    # Also when one of them is not even a bearer token (a proxy may have checked either).
    headers = httpx.Headers([("Authorization", "Basic eDp5"), ("Authorization", f"Bearer {good}")])
    assert_problem(await http.get("/api/v1/things", headers=headers), 400)


async def test_a_body_is_not_parsed_before_the_caller_is_authenticated(http):
    big = {"name": "y" * 100_000}
    missing = await http.post("/api/v1/things", json=big)
    assert assert_problem(missing, 401)["detail"] == "a bearer access token is required"
    assert missing.headers["www-authenticate"] == 'Bearer realm="hats"'
    expired = await http.post(
        "/api/v1/things", json=big, headers={"Authorization": f"Bearer {token(MARKET_WRITE, now=1_000_000)}"}
    )
    assert_problem(expired, 401)
    assert 'error="invalid_token"' in expired.headers["www-authenticate"]
    foreign = OKPKey.generate_key("Ed25519", parameters={"kid": "guard"})
    forged = mint_access_token(
        foreign,
        issuer=ISSUER,
        audience=AUDIENCE,
        subject="client:x",
        client_id="x",
        tenant="acme",
        scopes=[MARKET_WRITE],
        ttl_s=900,
    )[0]
    assert_problem(await http.post("/api/v1/things", json=big, headers={"Authorization": f"Bearer {forged}"}), 401)
    chunked = await http.post("/api/v1/things", content=_chunks(b'{"name": "z"}'))  # no Content-Length
    assert_problem(chunked, 401)
    assert READ == [0, 0, 0, 0]
    ok = await http.post(
        "/api/v1/things", json={"name": "ok"}, headers={"Authorization": f"Bearer {token(MARKET_WRITE)}"}
    )
    assert ok.status_code == 200 and ok.json() == {"name": "ok", "client_id": "desk"}
    assert READ[-1] == len(b'{"name":"ok"}')
    # Scopes stay the route's to check: a valid token without market:write is refused by require().
    assert_problem(
        await http.post(
            "/api/v1/things", json={"name": "r"}, headers={"Authorization": f"Bearer {token(MARKET_READ)}"}
        ),
        403,
    )


async def _chunks(data: bytes):
    yield data


async def test_requests_without_a_body_go_on_to_their_routes(http):
    assert (await http.get("/healthz")).status_code == 200
    assert_problem(await http.get("/api/v1/things"), 401)  # the route's own refusal, as before
    ok = await http.get("/api/v1/things", headers={"Authorization": f"Bearer {token(MARKET_READ)}"})
    assert ok.json() == {"client_id": "desk"}


async def test_an_app_without_token_verification_only_refuses_two_authorizations(tmp_path):
    app = kit_app(tmp_path, with_auth=False)

    @app.post("/open")
    async def open_route(batch: Batch) -> dict:
        return {"name": batch.name}

    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.post("/open", json={"name": "free"})).json() == {"name": "free"}
        headers = httpx.Headers([("Authorization", "Basic eDp5"), ("Authorization", "Basic eTp6")])
        assert_problem(await http.post("/open", json={"name": "no"}, headers=headers), 400)


async def test_readyz_names_the_failed_check_but_not_the_exception(tmp_path, caplog):
    app = build_app("performance-analytics", settings=PlatformSettings(hats_var_dir=tmp_path))

    async def broken() -> str | None:
        raise OSError("connection to postgresql://hats:hunter2@db.internal:5432 refused")

    app.kit.add_check("postgres", broken)
    transport = httpx.ASGITransport(app=app)
    with caplog.at_level(logging.ERROR):
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["postgres"] == {"ok": False, "detail": "check failed; see the service log"}
    assert "hunter2" not in response.text and "OSError" not in response.text
    assert any(r.exc_info and "hunter2" in str(r.exc_info[1]) for r in caplog.records)  # the log has it
