"""The /api/v1 reverse proxy, end to end: the gateway's real app served for real, real upstreams, real tokens."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import inspect
import math
import time
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from edge_testkit import edge_mesh, forged, pattern, serve
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.api_gateway.proxy import GatewayProxy
from services.api_gateway.settings import GatewaySettings
from shared.auth.scopes import INTERNAL, MARKET_READ
from shared.ratelimit import SlidingWindowLimiter

CHALLENGE = 'Bearer realm="hats"'
#: The margin the gateway's limiter keeps (it does not set its own).
SAFETY_MARGIN = inspect.signature(SlidingWindowLimiter).parameters["safety_margin"].default
#: The module's gateway: the shipped settings but for a short upstream timeout and a rate limit
#: a test can reach (both only through GatewaySettings, as a deployment sets them).
SETTINGS = GatewaySettings(
    auth_failures_per_client=1000,
    auth_failures_per_ip=1000,
    upstream_timeout_s=0.5,
    rate_limit_requests=10,
    rate_limit_window_s=60.0,
)
READ_TIMEOUT_S = SETTINGS.upstream_timeout_s
MAX_BODY = GatewaySettings().max_body_bytes  # as shipped: 4 MiB


@pytest.fixture(scope="module")
async def mesh(infra_env):
    # The gateway's server span goes to the process's tracer provider (the kit installs it once
    # per process); the test reads it from there.
    async with edge_mesh(infra_env, SETTINGS, areas=("market", "users")) as mesh:
        provider = trace.get_tracer_provider()
        assert isinstance(provider, TracerProvider)
        spans = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        mesh.spans = spans  # type: ignore[attr-defined]
        yield mesh
        spans.shutdown()  # records nothing more for the modules after this one


@pytest.fixture
async def http(mesh):
    async with httpx.AsyncClient(base_url=mesh.url, timeout=10.0) as client:
        yield client


def headers_of(echo: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in echo["headers"]:
        out.setdefault(name.lower(), []).append(value)
    return out


def assert_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


async def raw_exchange(base_url: str, request: bytes, timeout_s: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """Write ``request`` as is on a new connection; read the answer until the server closes."""
    parts = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout_s)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


# --- routing ------------------------------------------------------------------------------


async def test_routes_by_area_to_the_owning_service(mesh, http):
    auth = mesh.tokens.bearer()
    market = await http.get("/api/v1/market/echo/x", headers=auth)
    users = await http.get("/api/v1/users/echo/y", headers=auth)
    assert market.status_code == users.status_code == 200
    assert market.json()["service"] == "database-service" and market.json()["raw_path"] == "/api/v1/market/echo/x"
    assert users.json()["service"] == "user-service" and users.json()["raw_path"] == "/api/v1/users/echo/y"


@pytest.mark.parametrize("path", ["/api/v1/nowhere/echo", "/api/v1/", "/api/v1/marketplace/echo"])
async def test_unknown_area_is_404_problem(mesh, http, path):
    assert_problem(await http.get(path, headers=mesh.tokens.bearer()), 404)


async def test_dot_segments_are_refused(mesh):
    # httpx would normalise the path; a raw request shows what a hostile client can send.
    token = mesh.tokens.mint()
    status, _, _ = await raw_exchange(
        mesh.url,
        (
            f"GET /api/v1/market/../users/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            "Connection: close\r\n\r\n"
        ).encode(),
    )
    assert status == 400


async def test_query_path_and_body_are_forwarded_byte_exact(mesh, http):
    query = "a=1&b=%20x&c=%2Fy&d=&e=%C3%A9&f=a+b&f=2&g=%25"
    body = bytes(range(256)) * 100  # every byte value, 25.6 KB
    response = await http.post(
        f"/api/v1/market/echo/a%2Fb%20c?{query}",
        content=body,
        headers={**mesh.tokens.bearer(), "Content-Type": "application/x-custom"},
    )
    echo = response.json()
    assert echo["method"] == "POST"
    assert echo["raw_path"] == "/api/v1/market/echo/a%2Fb%20c"
    assert echo["query"] == query
    assert base64.b64decode(echo["body"]) == body
    sent = headers_of(echo)
    assert sent["content-type"] == ["application/x-custom"]
    assert sent["content-length"] == [str(len(body))]


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
async def test_methods_and_empty_bodies(mesh, http, method):
    response = await http.request(method, "/api/v1/market/echo", headers=mesh.tokens.bearer())
    assert response.status_code == 200
    assert response.json()["method"] == method
    assert response.json()["body"] == ""


# --- headers --------------------------------------------------------------------------------


async def test_hop_by_hop_headers_are_stripped_both_ways(mesh, http):
    response = await http.get(
        "/api/v1/market/echo",
        headers={
            **mesh.tokens.bearer(),
            "Connection": "keep-alive, X-Private",
            "X-Private": "for the next hop only",
            "Keep-Alive": "timeout=30",
            "TE": "trailers",
            "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0",
            "Proxy-Connection": "keep-alive",
            "X-End-To-End": "kept",
        },
    )
    sent = headers_of(response.json())
    for hop in (
        "connection",
        "x-private",
        "keep-alive",
        "te",
        "proxy-authorization",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
    ):
        assert hop not in sent, hop
    assert sent["x-end-to-end"] == ["kept"]
    # The upstream answered with Keep-Alive, Proxy-Authenticate and "Connection: X-Secret-Hop".
    assert response.headers["x-upstream"] == "database-service"
    assert "proxy-authenticate" not in response.headers
    assert "x-secret-hop" not in response.headers
    assert "keep-alive" not in response.headers
    assert len(response.headers.get_list("date")) == 1  # the gateway's own, not the upstream's as well


async def test_identity_and_forwarding_headers(mesh, http):
    auth = mesh.tokens.bearer()
    response = await http.get(
        "/api/v1/market/echo",
        headers={
            **auth,
            "X-Request-ID": "req-123.abc",
            "X-Forwarded-For": "6.6.6.6",
            "X-Forwarded-Host": "evil.example",
        },
    )
    sent = headers_of(response.json())
    assert sent["authorization"] == [auth["Authorization"]]  # services verify the JWT themselves
    assert sent["x-request-id"] == ["req-123.abc"]
    assert response.headers["x-request-id"] == "req-123.abc"
    assert sent["x-forwarded-for"] == ["127.0.0.1"]  # the caller's claim is not trusted
    assert sent["x-forwarded-proto"] == ["http"]
    assert sent["x-forwarded-host"] == [urlsplit(mesh.url).netloc]
    assert sent["host"] == [urlsplit(mesh.routes["market"]).netloc]  # the upstream's own authority


@pytest.mark.parametrize("given", [None, "has space", "x" * 200, "../../etc/passwd\\"])
async def test_request_id_generated_when_missing_or_malformed(mesh, http, given):
    headers = mesh.tokens.bearer()
    if given is not None:
        headers["X-Request-ID"] = given
    response = await http.get("/api/v1/market/echo", headers=headers)
    (request_id,) = headers_of(response.json())["x-request-id"]
    assert request_id != given and len(request_id) == 32 and int(request_id, 16) >= 0
    assert response.headers["x-request-id"] == request_id


async def test_traceparent_of_the_gateway_span_is_forwarded(mesh, http):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    mesh.spans.clear()
    response = await http.get(
        "/api/v1/market/echo", headers={**mesh.tokens.bearer(), "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    )
    (traceparent,) = headers_of(response.json())["traceparent"]
    _version, forwarded_trace, parent_span, _flags = traceparent.split("-")
    assert forwarded_trace == trace_id  # same trace as the caller's...
    assert parent_span != "00f067aa0ba902b7"  # ...continued by the gateway's server span
    # The upstream's own server span shares the process's provider: pick the gateway's by its id.
    (span,) = [s for s in mesh.spans.get_finished_spans() if format(s.context.span_id, "016x") == parent_span]
    assert span.kind.name == "SERVER"
    assert span.name == "GET /api/v1/market"
    assert span.attributes["http.route"] == "/api/v1/market"


# --- authentication -----------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Basic YWxwaGE6c2VjcmV0", "Bearer", "Token abc.def"])
async def test_401_without_a_bearer_token(mesh, http, authorization):
    hits = mesh.upstreams["market"].state.hits
    headers = {"Authorization": authorization} if authorization else {}
    response = await http.get("/api/v1/market/echo", headers=headers)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == CHALLENGE
    assert mesh.upstreams["market"].state.hits == hits  # never reached the service


@pytest.mark.parametrize(
    ("token", "description"),
    [
        ("not-a-jwt", "malformed token"),
        ("expired", "token expired"),
        ("foreign", "bad signature"),
    ],
)
async def test_401_with_an_invalid_token(mesh, http, token, description):
    if token == "expired":
        token = mesh.tokens.mint(now=int(time.time()) - 3600)
    elif token == "foreign":  # same kid, another key: a forgery
        token = forged(mesh.tokens.mint())
    hits = mesh.upstreams["market"].state.hits
    response = await http.get("/api/v1/market/echo", headers={"Authorization": f"Bearer {token}"})
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == (
        f'{CHALLENGE}, error="invalid_token", error_description="{description}"'
    )
    assert mesh.upstreams["market"].state.hits == hits


@pytest.mark.parametrize("second", ["valid", "forged", "basic"])
async def test_two_authorization_headers_are_refused_not_forwarded(mesh, http, second):
    # The gateway checked the last and forwarded both, services used the first: now neither happens.
    good = mesh.tokens.mint()
    other = {"valid": mesh.tokens.mint(scopes=["market:write"]), "forged": forged(good), "basic": None}[second]
    values = [f"Bearer {good}", f"Bearer {other}" if other else "Basic YWxwaGE6c2VjcmV0"]
    hits = mesh.upstreams["market"].state.hits
    for pair in (values, values[::-1]):
        response = await http.get("/api/v1/market/echo", headers=httpx.Headers([("Authorization", v) for v in pair]))
        assert assert_problem(response, 400)["detail"] == "more than one Authorization header"
        assert response.headers["x-content-type-options"] == "nosniff"  # inside the security headers
    assert mesh.upstreams["market"].state.hits == hits


async def test_internal_scope_tokens_are_refused_at_the_public_door(mesh, http):
    hits = mesh.upstreams["market"].state.hits
    response = await http.get(
        "/api/v1/market/echo", headers=mesh.tokens.bearer("user-service", [INTERNAL, MARKET_READ])
    )
    assert_problem(response, 403)
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert mesh.upstreams["market"].state.hits == hits


async def test_gateway_does_not_check_scopes_services_do(mesh, http):
    # No market:read: the gateway forwards, the service refuses (defense in depth).
    response = await http.post(
        "/api/v1/market/items", json={"name": "x", "quantity": 1}, headers=mesh.tokens.bearer("trader", ["trade"])
    )
    assert response.status_code == 403
    assert 'scope="market:read"' in response.headers["www-authenticate"]
    ok = await http.post(
        "/api/v1/market/items", json={"name": "x", "quantity": 1}, headers=mesh.tokens.bearer("reader", [MARKET_READ])
    )
    assert ok.status_code == 201 and ok.json() == {"name": "x", "quantity": 1}


# --- rate limit ---------------------------------------------------------------------------


async def test_rate_limit_per_client(mesh, http):
    # The shipped limiter: one window per client across every area, with the seeds' safety margin.
    allowed = math.floor(SETTINGS.rate_limit_requests * SAFETY_MARGIN)
    greedy, modest = mesh.tokens.bearer("greedy"), mesh.tokens.bearer("modest")
    for i in range(allowed):
        area = ("users", "market")[i % 2]
        assert (await http.get(f"/api/v1/{area}/echo", headers=greedy)).status_code == 200, i
    refused = await http.get("/api/v1/users/echo", headers=greedy)
    assert_problem(refused, 429)
    assert 1 <= int(refused.headers["retry-after"]) <= SETTINGS.rate_limit_window_s
    assert refused.headers["x-content-type-options"] == "nosniff"  # the security headers wrap it
    assert_problem(await http.get("/api/v1/market/echo", headers=greedy), 429)  # not per area
    assert (await http.get("/api/v1/users/echo", headers=modest)).status_code == 200


def test_the_shipped_limits():
    shipped = GatewaySettings()
    assert shipped.max_body_bytes == 4 * 1024 * 1024
    assert (shipped.rate_limit_requests, shipped.rate_limit_window_s) == (2_000, 1.0)


# --- body size ----------------------------------------------------------------------------


async def test_413_on_declared_content_length_without_reading_the_body(mesh):
    token = mesh.tokens.mint()
    started = time.monotonic()
    # Declares 10 MB (> the shipped 4 MiB) and sends none of it: only an answer that does not wait returns.
    status, headers, body = await raw_exchange(
        mesh.url,
        (
            f"POST /api/v1/market/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
        ).encode(),
    )
    assert status == 413 and time.monotonic() - started < 2
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    assert orjson.loads(body)["status"] == 413


async def test_413_on_an_oversize_chunked_body(mesh, http):
    hits = mesh.upstreams["market"].state.hits

    async def chunks():
        for _ in range(MAX_BODY // 65536 + 1):
            yield b"x" * 65536  # 4 MiB + 64 KiB, no Content-Length: counted as it streams

    response = await http.post("/api/v1/market/echo", content=chunks(), headers=mesh.tokens.bearer())
    assert_problem(response, 413)
    assert mesh.upstreams["market"].state.hits == hits


async def test_chunked_body_within_the_limit_is_forwarded(mesh, http):
    async def chunks():
        for i in range(4):
            yield bytes([i]) * 4096

    response = await http.post("/api/v1/market/echo", content=chunks(), headers=mesh.tokens.bearer())
    assert base64.b64decode(response.json()["body"]) == b"".join(bytes([i]) * 4096 for i in range(4))


async def test_a_body_of_exactly_the_shipped_limit_is_forwarded(mesh, http):
    body = pattern(MAX_BODY)
    response = await http.post("/api/v1/market/echo", content=body, headers=mesh.tokens.bearer())
    assert response.status_code == 200
    assert base64.b64decode(response.json()["body"]) == body
    too_big = await http.post("/api/v1/market/echo", content=body + b"x", headers=mesh.tokens.bearer())
    assert_problem(too_big, 413)


# --- upstream failures --------------------------------------------------------------------


async def test_upstream_down_is_502_fast(mesh, http):
    started = time.monotonic()
    response = await http.get("/api/v1/ingest/anything", headers=mesh.tokens.bearer())  # data-bridge is down
    assert_problem(response, 502)
    assert time.monotonic() - started < 1.5


async def test_upstream_slow_is_504_within_the_timeout(mesh, http):
    started = time.monotonic()
    response = await http.get("/api/v1/market/slow", params={"s": 3}, headers=mesh.tokens.bearer())
    assert_problem(response, 504)
    assert time.monotonic() - started < READ_TIMEOUT_S + 0.5


async def test_upstream_5xx_is_passed_through_unchanged(mesh, http):
    response = await http.get("/api/v1/market/fail", headers=mesh.tokens.bearer())
    assert response.status_code == 500
    assert response.content == b'{"oops": true}'
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-failure"] == "deliberate"


@pytest.mark.parametrize("chunked", [True, False])
async def test_large_response_streams_back_intact(mesh, http, chunked):
    size = 5_000_000
    async with http.stream(
        "GET", "/api/v1/market/big", params={"n": size, "chunked": chunked}, headers=mesh.tokens.bearer()
    ) as response:
        assert response.status_code == 200
        digest, received = hashlib.sha256(), 0
        async for chunk in response.aiter_raw():
            digest.update(chunk)
            received += len(chunk)
    assert received == size
    assert digest.hexdigest() == hashlib.sha256(pattern(size)).hexdigest()
    if not chunked:
        assert response.headers["content-length"] == str(size)


async def test_bare_proxy_app_passes_the_callers_trace_context_on(mesh):
    # Served alone (its own ASGI lifespan opens the pool), with no server span to continue from.
    proxy = GatewayProxy({"market": mesh.routes["market"]}, mesh.gateway.server.verifier)
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with serve(proxy) as url, httpx.AsyncClient(base_url=url, timeout=10.0) as http:
        response = await http.get("/api/v1/market/echo", headers={**mesh.tokens.bearer(), "traceparent": traceparent})
        assert response.status_code == 200
        assert headers_of(response.json())["traceparent"] == [traceparent]
        assert_problem(await http.get("/elsewhere", headers=mesh.tokens.bearer()), 404)
