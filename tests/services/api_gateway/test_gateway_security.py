"""Security headers on every gateway response; CORS off by default, on for configured origins."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re

import httpx
import pytest
from edge_testkit import edge_mesh

from services.api_gateway.security import API_CSP, docs_csp, install_security
from services.api_gateway.settings import GatewaySettings
from shared.kit.app import build_app
from tests.docs_checks import assert_docs_work_offline

ALLOWED_ORIGIN = "https://app.example.com"
#: As shipped (CORS off), but for brute-force limits the tests' deliberate failures never reach.
SHIPPED = GatewaySettings(auth_failures_per_client=1000, auth_failures_per_ip=1000)


@pytest.fixture(scope="module")
async def stack(infra_env):
    """The real gateway twice: as shipped (no CORS), and with CORS for ALLOWED_ORIGIN."""
    with_cors = SHIPPED.model_copy(update={"cors_origins": (ALLOWED_ORIGIN,)})
    async with contextlib.AsyncExitStack() as running:
        plain = await running.enter_async_context(edge_mesh(infra_env, SHIPPED, areas=("market",)))
        cors = await running.enter_async_context(edge_mesh(infra_env, with_cors, areas=("market",)))
        yield plain, cors


@pytest.fixture
async def plain(stack):
    async with httpx.AsyncClient(base_url=stack[0].url, timeout=10.0) as client:
        yield client


@pytest.fixture
async def with_cors(stack):
    async with httpx.AsyncClient(base_url=stack[1].url, timeout=10.0) as client:
        yield client


def assert_common(response: httpx.Response) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert len(response.headers.get_list("content-security-policy")) == 1


async def test_proxied_api_responses_carry_the_api_policy(stack, plain):
    response = await plain.get("/api/v1/market/echo", headers=stack[0].tokens.bearer())
    assert response.status_code == 200
    assert_common(response)
    assert response.headers["content-security-policy"] == API_CSP
    assert "default-src 'none'" in API_CSP and "frame-ancestors 'none'" in API_CSP
    assert response.headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in response.headers  # plain http


async def test_gateway_errors_carry_them_too(plain):
    response = await plain.get("/api/v1/market/echo")
    assert response.status_code == 401
    assert_common(response)
    assert response.headers["cache-control"] == "no-store"


async def test_an_unhandled_exception_still_gets_the_headers():
    app = build_app("api-gateway", routers=[])

    @app.get("/oauth2/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    install_security(app)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        response = await client.get("/oauth2/boom")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/problem+json")
    assert_common(response)
    assert response.headers["cache-control"] == "no-store"


async def test_upstream_cache_control_is_kept(stack, plain):
    response = await plain.get("/api/v1/market/cached", headers=stack[0].tokens.bearer())
    assert response.headers.get_list("cache-control") == ["public, max-age=60"]


async def test_oauth2_is_no_store_and_other_paths_are_not_forced(plain):
    token = await plain.post("/oauth2/token")
    assert token.headers["cache-control"] == "no-store"
    assert_common(token)
    health = await plain.get("/healthz")
    assert "cache-control" not in health.headers
    assert_common(health)


async def test_hsts_only_over_https(plain):
    assert "strict-transport-security" not in (await plain.get("/healthz")).headers
    https = await plain.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert https.headers["strict-transport-security"].startswith("max-age=")


async def test_docs_get_a_policy_that_lets_swagger_ui_run(plain):
    response = await plain.get("/docs")
    assert response.status_code == 200
    assert_common(response)
    csp = response.headers["content-security-policy"]
    assert csp != API_CSP
    # Swagger UI comes from the gateway itself, so the policy names no other origin.
    scripts = re.findall(r'<script src="([^"]+)"', response.text)
    assert scripts and all(src.startswith("/docs/") for src in scripts)
    assert "http" not in csp and "//" not in csp
    script_src = csp.split("script-src", 1)[1].split(";")[0]
    assert "'self'" in script_src.split()
    # The page's inline script is allowed by its hash, not by 'unsafe-inline'.
    (inline,) = re.findall(rb"<script>(.*?)</script>", response.content, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(inline).digest()).decode()
    assert f"'sha256-{digest}'" in script_src and "unsafe-inline" not in script_src
    assert "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp


async def test_docs_work_offline_behind_the_security_headers(plain):
    refs = await assert_docs_work_offline(plain)
    for kind, url in refs.urls:
        if kind in ("script", "stylesheet", "icon"):
            asset = await plain.get(url)
            assert_common(asset)  # streamed through with the docs policy, not buffered and hashed
            assert asset.headers["content-security-policy"] == docs_csp()
            assert asset.headers["content-length"] == str(len(asset.content))


async def test_cors_is_off_by_default(plain):
    preflight = await plain.options(
        "/api/v1/market/echo",
        headers={
            "Origin": ALLOWED_ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert "access-control-allow-origin" not in preflight.headers
    assert_common(preflight)


async def test_cors_preflight_for_a_configured_origin(stack, with_cors):
    preflight = await with_cors.options(
        "/api/v1/market/echo",
        headers={
            "Origin": ALLOWED_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200  # answered before authentication: preflights carry no token
    assert preflight.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert_common(preflight)
    actual = await with_cors.get("/api/v1/market/echo", headers={"Origin": ALLOWED_ORIGIN, **stack[1].tokens.bearer()})
    assert actual.status_code == 200
    assert actual.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "x-request-id" in actual.headers["access-control-expose-headers"].lower()


async def test_cors_refuses_other_origins(with_cors):
    preflight = await with_cors.options(
        "/api/v1/market/echo", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    )
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers


async def test_the_shipped_body_limit_answers_with_the_headers(stack, plain):
    async def over_the_limit():  # streamed (no Content-Length): counted as it arrives
        for _ in range(SHIPPED.max_body_bytes // 65536):
            yield b"x" * 65536
        yield b"x"

    # One byte over the shipped 4 MiB: a problem with the security headers.
    response = await plain.post("/api/v1/market/echo", content=over_the_limit(), headers=stack[0].tokens.bearer())
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert_common(response)
    assert response.headers["cache-control"] == "no-store"
