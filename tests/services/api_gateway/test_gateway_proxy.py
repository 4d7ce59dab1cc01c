"""The /api/v1 reverse proxy, end to end: real uvicorn servers on both sides, real tokens."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from edge_testkit import Tokens, bound_socket, echo_upstream, gateway_app, pattern, serve, url_of
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.api_gateway.proxy import GatewayProxy, ProxySettings
from shared.auth.scopes import INTERNAL, MARKET_READ
from shared.ratelimit import Limit, SlidingWindowLimiter

CHALLENGE = 'Bearer realm="hats"'
READ_TIMEOUT_S = 0.5
MAX_BODY = 32 * 1024


class Mesh:
    def __init__(
        self, gateway: str, upstreams: dict, routes: dict, spans: InMemorySpanExporter, tokens: Tokens
    ) -> None:
        self.url, self.upstreams, self.routes, self.spans, self.tokens = gateway, upstreams, routes, spans, tokens


@pytest.fixture(scope="module")
async def mesh():
    tokens = Tokens()
    market = echo_upstream("database-service", "market", tokens.verifier)
    users = echo_upstream("user-service", "users", tokens.verifier)
    down = bound_socket()  # reserved port, nobody listening: connections are refused
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    limiter = SlidingWindowLimiter({"default": Limit(10_000, 60.0), "users": Limit(5, 60.0)}, safety_margin=1.0)
    async with serve(market) as market_url, serve(users) as users_url:
        routes = {"market": market_url, "users": users_url, "down": url_of(down)}
        app, _ = gateway_app(
            routes,
            tokens,
            limiter=limiter,
            settings=ProxySettings(read_timeout_s=READ_TIMEOUT_S, max_body_bytes=MAX_BODY),
            telemetry={
                "tracing": True,
                "tracer_provider": provider,
                "metrics": False,
                "logs": False,
                "operation_spans": False,
            },
        )
        # proxy_headers off: the gateway is the first hop here, so X-Forwarded-* from the caller are spoofs.
        async with serve(app, proxy_headers=False) as url:
            yield Mesh(url, {"market": market, "users": users}, routes, spans, tokens)
    down.close()
    provider.shutdown()


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
    (span,) = [s for s in mesh.spans.get_finished_spans() if s.kind.name == "SERVER"]
    assert format(span.context.span_id, "016x") == parent_span
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
        good = mesh.tokens.mint()
        other = Tokens().mint()
        token = ".".join(good.split(".")[:2] + other.split(".")[2:])
    hits = mesh.upstreams["market"].state.hits
    response = await http.get("/api/v1/market/echo", headers={"Authorization": f"Bearer {token}"})
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == (
        f'{CHALLENGE}, error="invalid_token", error_description="{description}"'
    )
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
    greedy, modest = mesh.tokens.bearer("greedy"), mesh.tokens.bearer("modest")
    for _ in range(5):
        assert (await http.get("/api/v1/users/echo", headers=greedy)).status_code == 200
    refused = await http.get("/api/v1/users/echo", headers=greedy)
    assert_problem(refused, 429)
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert (await http.get("/api/v1/users/echo", headers=modest)).status_code == 200
    assert (await http.get("/api/v1/market/echo", headers=greedy)).status_code == 200  # other area: own limit


# --- body size ----------------------------------------------------------------------------


async def test_413_on_declared_content_length_without_reading_the_body(mesh):
    token = mesh.tokens.mint()
    started = time.monotonic()
    # Declares 10 MB and sends none of it: only an answer that does not wait for the body returns.
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
        for _ in range(12):
            yield b"x" * 4096  # 48 KB > 32 KB, no Content-Length: counted as it streams

    response = await http.post("/api/v1/market/echo", content=chunks(), headers=mesh.tokens.bearer())
    assert_problem(response, 413)
    assert mesh.upstreams["market"].state.hits == hits


async def test_chunked_body_within_the_limit_is_forwarded(mesh, http):
    async def chunks():
        for i in range(4):
            yield bytes([i]) * 4096

    response = await http.post("/api/v1/market/echo", content=chunks(), headers=mesh.tokens.bearer())
    assert base64.b64decode(response.json()["body"]) == b"".join(bytes([i]) * 4096 for i in range(4))


# --- upstream failures --------------------------------------------------------------------


async def test_upstream_down_is_502_fast(mesh, http):
    started = time.monotonic()
    response = await http.get("/api/v1/down/anything", headers=mesh.tokens.bearer())
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
    proxy = GatewayProxy({"market": mesh.routes["market"]}, mesh.tokens.verifier)
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with serve(proxy) as url, httpx.AsyncClient(base_url=url, timeout=10.0) as http:
        response = await http.get("/api/v1/market/echo", headers={**mesh.tokens.bearer(), "traceparent": traceparent})
        assert response.status_code == 200
        assert headers_of(response.json())["traceparent"] == [traceparent]
        assert_problem(await http.get("/elsewhere", headers=mesh.tokens.bearer()), 404)
