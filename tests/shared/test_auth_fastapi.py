"""shared.auth.fastapi: RFC 6750 challenges and problem+json bodies on a real FastAPI app."""

from __future__ import annotations

import time

import httpx
import pytest
from fastapi import FastAPI
from joserfc.jwk import KeySet, OKPKey

from shared.auth import LocalKeySource, Principal, RevokedTokens, TokenVerifier, mint_access_token
from shared.auth.fastapi import install_auth, require
from shared.auth.scopes import ADMIN, MARKET_READ, TRADE
from shared.kit.problems import PROBLEM_JSON, install_problem_handlers

ISSUER, AUDIENCE = "http://127.0.0.1:8000", "hats-api"
KEY = OKPKey.generate_key("Ed25519", parameters={"kid": "k1"})
REVOKED = RevokedTokens()


def token(*scopes: str, **overrides) -> str:
    args = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "subject": "client:desk",
        "client_id": "desk",
        "tenant": "acme",
        "scopes": scopes,
        "ttl_s": 900,
        **overrides,
    }
    return mint_access_token(KEY, **args)[0]


def build_app(*, with_auth: bool = True) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    if with_auth:
        install_auth(app, TokenVerifier(ISSUER, AUDIENCE, LocalKeySource(lambda: KeySet([KEY])), revoked=REVOKED))

    @app.get("/bars")
    async def bars(principal: Principal = require(MARKET_READ)) -> dict:
        return {"tenant": principal.tenant, "client_id": principal.client_id, "scopes": sorted(principal.scopes)}

    @app.post("/orders", dependencies=[require(TRADE, ADMIN)])
    async def orders() -> dict:
        return {"ok": True}

    return app


@pytest.fixture
async def client():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app()), base_url="http://svc") as c:
        yield c


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def assert_problem(response: httpx.Response, status: int, challenge: str) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["www-authenticate"] == challenge
    body = response.json()
    assert body["status"] == status and body["instance"] == response.request.url.path
    return body


async def test_ok_with_the_scope(client):
    response = await client.get("/bars", headers=bearer(token(MARKET_READ)))
    assert response.status_code == 200
    assert response.json() == {"tenant": "acme", "client_id": "desk", "scopes": ["market:read"]}


async def test_the_scheme_is_case_insensitive(client):
    response = await client.get("/bars", headers={"Authorization": f"bEaReR {token(MARKET_READ)}"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer   "},
        {"Authorization": "Basic ZGVzazpzZWNyZXQ="},
        {"X-Token": "whatever"},
    ],
)
async def test_no_bearer_token_is_401_with_a_bare_challenge(client, headers):
    body = assert_problem(await client.get("/bars", headers=headers), 401, 'Bearer realm="hats"')
    assert body["title"] == "Unauthorized"


async def test_an_invalid_token_is_401_invalid_token(client):
    response = await client.get("/bars", headers=bearer("not-a-jwt"))
    assert_problem(response, 401, 'Bearer realm="hats", error="invalid_token", error_description="malformed token"')


async def test_an_expired_token_says_so_without_echoing_it(client):
    expired = token(MARKET_READ, now=int(time.time()) - 2000)
    response = await client.get("/bars", headers=bearer(expired))
    assert_problem(response, 401, 'Bearer realm="hats", error="invalid_token", error_description="token expired"')
    assert expired not in response.text
    assert expired.split(".")[2] not in response.headers["www-authenticate"]


async def test_a_revoked_token_is_401(client):
    value, claims = mint_access_token(
        KEY,
        issuer=ISSUER,
        audience=AUDIENCE,
        subject="client:desk",
        client_id="desk",
        tenant="acme",
        scopes=[MARKET_READ],
        ttl_s=900,
    )
    assert (await client.get("/bars", headers=bearer(value))).status_code == 200
    REVOKED.add(claims["jti"], claims["exp"])
    assert_problem(
        await client.get("/bars", headers=bearer(value)),
        401,
        'Bearer realm="hats", error="invalid_token", error_description="token revoked"',
    )


async def test_a_missing_scope_is_403_insufficient_scope(client):
    response = await client.get("/bars", headers=bearer(token(TRADE)))
    body = assert_problem(response, 403, 'Bearer realm="hats", error="insufficient_scope", scope="market:read"')
    assert body["detail"] == "requires scope market:read"


async def test_every_required_scope_is_needed_and_named(client):
    challenge = 'Bearer realm="hats", error="insufficient_scope", scope="trade admin"'
    assert_problem(await client.post("/orders", headers=bearer(token(TRADE))), 403, challenge)
    assert (await client.post("/orders", headers=bearer(token(TRADE, ADMIN)))).json() == {"ok": True}


async def test_a_service_that_forgot_install_auth_fails_loudly():
    transport = httpx.ASGITransport(app=build_app(with_auth=False), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as c:
        response = await c.get("/bars", headers=bearer(token(MARKET_READ)))
    assert response.status_code == 500


def test_the_bearer_scheme_is_in_the_openapi_document():
    document = build_app().openapi()
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert {"bearer": []} in document["paths"]["/bars"]["get"]["security"]


def test_require_refuses_a_malformed_scope():
    with pytest.raises(ValueError):
        require("market:read trade")


async def test_two_authorization_headers_are_refused_not_the_first_one_used(client):
    # A plain FastAPI app (no kit around it): require() itself refuses, it does not pick one.
    headers = httpx.Headers([("Authorization", f"Bearer {token(MARKET_READ)}"), ("Authorization", "Bearer forged")])
    response = await client.get("/bars", headers=headers)
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["detail"] == "more than one Authorization header"


async def test_a_verifier_without_its_revocation_list_answers_503_not_401():
    # A 401 tells the caller its token is bad (the collector would fetch another); the token may
    # be fine: the service just cannot judge any yet.
    app = FastAPI()
    install_problem_handlers(app)
    not_ready = RevokedTokens(complete=False)
    install_auth(app, TokenVerifier(ISSUER, AUDIENCE, LocalKeySource(lambda: KeySet([KEY])), revoked=not_ready))

    @app.get("/bars", dependencies=[require(MARKET_READ)])
    async def bars() -> dict:
        return {}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as c:
        r = await c.get("/bars", headers=bearer(token(MARKET_READ)))
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert "www-authenticate" not in r.headers
        not_ready.complete = True
        assert (await c.get("/bars", headers=bearer(token(MARKET_READ)))).status_code == 200
