"""The gateway's authenticated reverse proxy for ``/api/v1/<area>/...`` (the hot path).

A pure ASGI app, no framework in between: per request it picks the upstream by
area (``shared.ports.ROUTES``), verifies the bearer token, refuses ``internal``
tokens, applies the per-client rate limit, reads the (bounded) body and forwards
the request over pooled keep-alive connections (``services.api_gateway.upstream``),
then streams the answer back. Hop-by-hop headers are dropped both ways; the
``Authorization`` header is kept, because every service verifies the JWT itself (that
is how identity travels).

Wiring in the gateway app (innermost, so metrics, CORS and security headers wrap it)::

    proxy = GatewayProxy(upstream_routes(rt.url_of), verifier, limiter, ProxySettings())
    install_proxy(app, proxy)                 # before the app starts
    ...                                       # and in the lifespan:
    async with proxy: yield

The upstream client: httpx 0.28 topped out near 500 requests/s on this workload (12 KB
JSON, 64 connections, 2 cores shared with the upstream and the load generator; its
pool degrades with concurrency); aiohttp reached ~7,500 but cost ~90 µs of CPU per
request more than ``UpstreamPool`` (its module says how that was measured). aiohttp
stays for the gateway's other calls to the services (``session``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from opentelemetry import propagate
from starlette.types import Receive, Scope, Send
from yarl import URL

from services.api_gateway.upstream import (
    Origin,
    UpstreamClosed,
    UpstreamError,
    UpstreamPool,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from shared import compat, ports
from shared.auth.bearer import AMBIGUOUS_AUTHORIZATION, CHALLENGE, MISSING_TOKEN, bearer_token, refusal
from shared.auth.principal import InvalidToken, Principal
from shared.auth.scopes import INTERNAL
from shared.kit.app import RouteLabel, claim_route
from shared.kit.problems import problem_response
from shared.ratelimit import SlidingWindowLimiter

log = logging.getLogger(__name__)

PREFIX = "/api/v1/"

#: RFC 9110 §7.6.1 hop-by-hop fields, plus the proxy-auth pair (RFC 9110 §11.7: they are
#: consumed by the proxy they are addressed to, i.e. us).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"proxy-connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
#: Also never copied from the caller: Host/Content-Length are recomputed for the upstream
#: hop, Expect was answered here (the body is read before forwarding), the X-Forwarded-*
#: set and the trace context are ours to write (callers could otherwise spoof them).
_REQUEST_DROP = HOP_BY_HOP | {
    b"host",
    b"content-length",
    b"expect",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-request-id",
    b"forwarded",
}
#: Upstream response fields we recompute; Content-Length is kept when the upstream sent one.
#: Date is a singleton field and uvicorn writes the gateway's own: passing the upstream's
#: on would send two.
_RESPONSE_DROP = HOP_BY_HOP | {b"date"}
_TRACE_FIELDS = frozenset({b"traceparent", b"tracestate", b"baggage"})
#: Methods that are safe to send twice when a pooled connection turns out dead.
_RETRYABLE = frozenset({"GET", "HEAD", "OPTIONS"})
#: A caller's X-Request-ID is kept only if it is a plain token (no log forging, bounded size).
_REQUEST_ID = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._:+/=-]{0,127}")
#: Responses up to this size are read whole and sent in one ASGI message.
_SMALL_BODY = 256 * 1024
_STREAM_CHUNK = 64 * 1024
#: How long an oversize streamed body is drained before the 413 (see ``handle``).
_DRAIN_S = 1.0


class Verifier(Protocol):
    async def verify(self, token: str) -> Principal: ...


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """Timeouts and limits of the proxy (the gateway maps its ``API_GATEWAY_*`` settings onto these)."""

    #: TCP connect to an upstream; a dead service answers "refused" at once, a black-holed one times out.
    connect_timeout_s: float = 1.0
    #: Longest silence while waiting for the upstream's response (headers or next body bytes) -> 504.
    read_timeout_s: float = 10.0
    #: Largest request body forwarded (ingest batches of 10,000 ticks are ~1.5 MB) -> 413.
    max_body_bytes: int = 4 * 1024 * 1024
    #: Pooled connections across all upstreams (requests beyond wait for one, within the read timeout).
    max_connections: int = 512
    #: Idle keep-alive connections are closed after this; below uvicorn's 5 s so we never
    #: reuse a connection the upstream is closing.
    keepalive_s: float = 4.0


class _BodyTooLarge(Exception):
    def __init__(self, streamed: bool) -> None:
        super().__init__()
        self.streamed = streamed


def upstream_routes(url_of: Callable[[str], str], routes: Mapping[str, str] = ports.ROUTES) -> dict[str, str]:
    """The proxy's routing table: area -> base URL (``url_of(service)``) of the service owning it."""
    return {area: url_of(service) for area, service in routes.items()}


class GatewayProxy:
    """ASGI app proxying ``/api/v1/<area>/...`` to the service owning ``<area>``.

    ``routes`` maps an area to its upstream base URL (``upstream_routes()``); the request
    path and query go to the upstream unchanged (byte for byte). ``verifier`` is anything
    with ``async verify(token) -> Principal`` raising ``InvalidToken``; ``limiter`` (may be
    ``None``) is asked per ``principal.client_id`` with the area as endpoint name, so a
    per-area ``Limit`` can be configured and others fall back to ``"default"``.

    The pooled client is opened by ``start()`` / ``async with proxy`` / the ASGI lifespan
    (or lazily on the first request) and closed by ``aclose()``; ``session`` exposes it
    for other gateway calls to the same upstreams (the merged OpenAPI document).
    """

    def __init__(
        self,
        routes: Mapping[str, str],
        verifier: Verifier,
        limiter: SlidingWindowLimiter | None = None,
        settings: ProxySettings | None = None,
    ) -> None:
        self.settings = settings or ProxySettings()
        self.verifier = verifier
        self.limiter = limiter
        self._upstreams = {area: _upstream_of(base) for area, base in routes.items()}
        self._area_routes = {area: RouteLabel(f"{PREFIX}{area}") for area in self._upstreams}
        self._session: aiohttp.ClientSession | None = None
        s = self.settings
        self._pool = UpstreamPool(
            connect_timeout_s=s.connect_timeout_s,
            read_timeout_s=s.read_timeout_s,
            keepalive_s=s.keepalive_s,
            max_connections=s.max_connections,
        )
        # `connect` bounds waiting for a pooled connection plus connecting; `sock_connect` the
        # TCP connect alone; `sock_read` each wait for upstream bytes. No `total`: a large
        # streamed answer may legitimately take longer than any single timeout.
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=s.read_timeout_s, sock_connect=s.connect_timeout_s, sock_read=s.read_timeout_s
        )

    # ------------------------------------------------------------------ lifecycle

    @property
    def session(self) -> aiohttp.ClientSession:
        """A pooled aiohttp client to the same upstreams, for the gateway's other calls to them
        (the merged OpenAPI document); opened on first use. Proxied requests use ``UpstreamPool``."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self.settings.max_connections, limit_per_host=0, keepalive_timeout=self.settings.keepalive_s
                ),
                timeout=self._timeout,
                # Shared by every caller: a cookie one upstream sets must never reach another caller.
                cookie_jar=aiohttp.DummyCookieJar(),
                # Bodies pass through as sent (Content-Encoding intact); add no headers of our own.
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            )
        return self._session

    async def start(self) -> None:
        """Accept requests (idempotent); connections open as requests need them."""
        self._pool.reopen()

    async def aclose(self) -> None:
        """Close the pooled connections (and the aiohttp client, if it was opened)."""
        await self._pool.aclose()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> GatewayProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.handle(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:  # websockets are not part of the public API
            await send({"type": "websocket.close", "code": 1008})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one HTTP request whose path is (or should be) under ``/api/v1/``."""
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        path: str = scope["path"]
        area = _area_of(path)
        upstream = self._upstreams.get(area) if area else None
        if area is None or upstream is None:
            await _problem(scope, send, 404, f"no API area {area!r}" if area else "not found")
            return
        if "/./" in path or "/../" in path or path.endswith(("/.", "/..")):
            # Services would see another resource than the one we authorised the call for.
            await _problem(scope, send, 400, "dot segments are not allowed in the path")
            return
        # FastAPI's router never sees this request: label its metrics and span by area.
        claim_route(scope, self._area_routes[area])

        # One pass over the headers: what to forward (raw, as uvicorn parsed them: lower-case
        # names, values llhttp accepted), and what we need to know.
        forward: list[tuple[bytes, bytes]] = []
        authorization = request_id = content_length = host = None
        chunked = False
        named: list[bytes] = []  # fields listed in Connection are hop-by-hop too
        trace_fields: list[tuple[bytes, bytes]] = []
        for name, value in scope["headers"]:
            if name in _REQUEST_DROP:
                if name == b"content-length":
                    content_length = value
                elif name == b"x-request-id":
                    request_id = value
                elif name == b"host":
                    host = value
                elif name == b"connection":
                    named.extend(t.strip().lower() for t in value.split(b","))
                elif name == b"transfer-encoding":
                    chunked = True
                continue
            if name == b"authorization":
                if authorization is not None:
                    # The kit's RequestGuard refuses this in the gateway app; the proxy is an
                    # ASGI app of its own too, and must never forward two (services read the first).
                    await _problem(scope, send, 400, AMBIGUOUS_AUTHORIZATION)
                    return
                authorization = value
            elif name in _TRACE_FIELDS:
                # Replaced by the context of our server span (below), which continues this one.
                trace_fields.append((name, value))
                continue
            forward.append((name, value))
        if named:
            forward = [(k, v) for k, v in forward if k not in named]

        principal = await self._authenticate(scope, send, authorization)
        if principal is None:
            return
        if self.limiter is not None:
            wait = self.limiter.acquire(principal.client_id, area)
            if wait > 0:
                await _problem(
                    scope,
                    send,
                    429,
                    f"rate limit of client {principal.client_id} exceeded",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
                return

        limit = self.settings.max_body_bytes
        try:
            # Neither Content-Length nor Transfer-Encoding: the request has no body (RFC 9112 §6.3).
            body = await _read_body(receive, content_length, limit) if content_length or chunked else None
        except _BodyTooLarge as exc:
            # A declared size is refused unread; a streamed one is drained a little (lingering
            # close): closing on unread data makes the kernel send RST, which can destroy our
            # 413 at the client before it reads it. Whatever stays unread closes the connection.
            drained = exc.streamed and await _drain(receive, limit, _DRAIN_S)
            await _problem(
                scope,
                send,
                413,
                f"request body larger than {limit} bytes",
                headers=None if drained else {"Connection": "close"},
            )
            return
        except ValueError:
            await _problem(scope, send, 400, "invalid Content-Length")
            return
        except ConnectionAbortedError:
            return  # the caller went away mid-body: nobody to answer

        if request_id is None or not _REQUEST_ID.fullmatch(request_id):
            request_id = os.urandom(16).hex().encode()
        client = scope.get("client")
        forward.append((b"x-request-id", request_id))
        forward.append((b"x-forwarded-for", client[0].encode("latin-1") if client else b"unknown"))
        forward.append((b"x-forwarded-proto", scope.get("scheme", "http").encode("latin-1")))
        if host is not None:
            forward.append((b"x-forwarded-host", host))
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        if "traceparent" in carrier:
            for name, value in carrier.items():
                field = (name.lower().encode("latin-1"), value.encode("latin-1"))
                if b"\r" in field[1] or b"\n" in field[1]:
                    continue  # never let a header value end the head early
                forward.append(field)
        else:
            # No current span (tracing off): pass the caller's context on rather than break the trace.
            forward.extend(trace_fields)

        origin, base_path = self._upstreams[area]
        method: str = scope["method"]
        query: bytes = scope.get("query_string", b"")
        parts = [method.encode("ascii"), b" ", base_path, raw_path]
        if query:
            parts += (b"?", query)
        parts += (b" HTTP/1.1\r\nhost: ", origin.authority, b"\r\n")
        for name, value in forward:
            parts += (name, b": ", value, b"\r\n")
        if body is not None:
            parts += (b"content-length: ", str(len(body)).encode("ascii"), b"\r\n")
        parts.append(b"\r\n")
        request = [b"".join(parts), body] if body else [b"".join(parts)]
        await self._forward(scope, send, origin, request, request_id)

    async def _authenticate(self, scope: Scope, send: Send, authorization: bytes | None) -> Principal | None:
        """The caller's principal, or ``None`` after answering 401/403 (RFC 6750 §3)."""
        token = bearer_token(authorization)
        if token is None:
            await _problem(scope, send, 401, MISSING_TOKEN, headers={"WWW-Authenticate": CHALLENGE})
            return None
        try:
            principal = await self.verifier.verify(token)
        except InvalidToken as exc:
            status, detail, headers = refusal(exc)
            await _problem(scope, send, status, detail, headers=headers)
            return None
        if INTERNAL in principal.scopes:
            # Service-to-service tokens never come through the public door; one that does leaked.
            log.warning("refused an internal-scope token of client %s at the public gateway", principal.client_id)
            await _problem(
                scope,
                send,
                403,
                "internal-scope tokens are not accepted by the public gateway",
                headers={
                    "WWW-Authenticate": f'{CHALLENGE}, error="insufficient_scope", '
                    'error_description="internal-scope token"'
                },
            )
            return None
        return principal

    async def _forward(
        self,
        scope: Scope,
        send: Send,
        origin: Origin,
        request: list[bytes],
        request_id: bytes,
    ) -> None:
        method: str = scope["method"]
        where = f"upstream {origin.host}:{origin.port}"
        try:
            response = await self._pool.request(origin, request, head_only=method == "HEAD", retry=method in _RETRYABLE)
        except UpstreamTimeout:
            await _problem(scope, send, 504, f"{where} did not answer in time")
            return
        except UpstreamClosed:
            await _problem(scope, send, 502, f"{where} closed the connection")
            return
        except UpstreamUnreachable as exc:
            await _problem(scope, send, 502, f"{where} unreachable: {exc}")
            return
        except UpstreamError:
            await _problem(scope, send, 502, f"{where} sent an answer that is not valid HTTP/1.1")
            return
        try:
            out: list[tuple[bytes, bytes]] = []
            named: set[bytes] = set()
            has_request_id = False
            for name, value in response.raw_headers:
                name = name.lower()
                if name in _RESPONSE_DROP:
                    if name == b"connection":
                        named.update(t.strip().lower() for t in value.split(b","))
                    continue
                if name == b"x-request-id":
                    has_request_id = True
                out.append((name, value))
            if named:
                out = [(k, v) for k, v in out if k not in named]
            if not has_request_id:
                out.append((b"x-request-id", request_id))
            length = response.content_length
            if length is not None and length <= _SMALL_BODY:
                try:
                    payload = await response.read()
                except UpstreamError as exc:
                    # Nothing sent yet: the caller can still get a proper answer.
                    status = 504 if isinstance(exc, UpstreamTimeout) else 502
                    await _problem(scope, send, status, f"{where} broke off its response")
                    return
                await send({"type": "http.response.start", "status": response.status, "headers": out})
                await send({"type": "http.response.body", "body": payload})
                return
            await send({"type": "http.response.start", "status": response.status, "headers": out})
            while True:
                # A failure from here on cannot become a problem document: the error propagates
                # and the server drops the connection, so the caller sees a truncated response.
                chunk = await response.read_chunk()
                if not chunk:
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            response.release()


def install_proxy(app: Any, proxy: GatewayProxy) -> None:
    """Put ``proxy`` in front of ``app``'s routes for ``/api/v1/...`` (call before the app starts).

    It becomes the innermost middleware, so the metrics, CORS and security-header
    middlewares and a server span all wrap proxied requests too. Those requests come in
    by the app's front door (``shared.kit.frontdoor``): the same user middleware and span,
    without FastAPI's telemetry wrapper and its routing and exception layers (~50 µs of
    CPU per proxied request). The app's lifespan must open and close the proxy
    (``async with proxy``); otherwise it opens lazily.
    """
    from shared.kit.frontdoor import install_front_door

    compat.add_innermost_middleware(app, ProxyMiddleware, proxy=proxy)
    install_front_door(app, PREFIX, proxy.handle, skip=(ProxyMiddleware,))


class ProxyMiddleware:
    """Sends ``/api/v1/...`` HTTP requests to the proxy and everything else to the app."""

    def __init__(self, app: Any, proxy: GatewayProxy) -> None:
        self.app = app
        self.proxy = proxy

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX):
            await self.proxy.handle(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _upstream_of(base: str) -> tuple[Origin, bytes]:
    """A service's base URL as the pool's origin and the path prefix of its requests."""
    url = URL(base.rstrip("/"))
    if url.scheme not in ("http", "https") or not url.host or url.query_string or url.fragment:
        raise ValueError(f"an upstream is an http(s) URL without query or fragment, not {base!r}")
    return Origin(url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80)), url.raw_path.rstrip(
        "/"
    ).encode("ascii")


def _area_of(path: str) -> str | None:
    if not path.startswith(PREFIX):
        return None
    area, _, _ = path[len(PREFIX) :].partition("/")
    return area or None


async def _read_body(receive: Receive, content_length: bytes | None, limit: int) -> bytes | None:
    """The whole request body (``None`` if there is none), refusing more than ``limit`` bytes.

    A declared Content-Length over the limit is refused before reading anything; a
    chunked body is counted as it arrives and refused as soon as it passes the limit.
    Buffering (bounded by ``limit``) lets the upstream get a Content-Length and one write.
    """
    if content_length is not None:
        if not content_length.isdigit():
            raise ValueError(content_length)
        declared = int(content_length)
        if declared > limit:
            raise _BodyTooLarge(streamed=False)
        if declared == 0:
            return b""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            raise ConnectionAbortedError("client disconnected while sending the body")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _BodyTooLarge(streamed=True)
            parts.append(chunk)
        if not message.get("more_body", False):
            break
    if not parts:
        return b"" if content_length is not None else None
    return parts[0] if len(parts) == 1 else b"".join(parts)


async def _drain(receive: Receive, budget: int, within_s: float) -> bool:
    """Read and discard up to ``budget`` more body bytes for at most ``within_s``; whether the body ended."""
    try:
        async with asyncio.timeout(within_s):
            while budget >= 0:
                message = await receive()
                if message["type"] != "http.request":
                    return False
                budget -= len(message.get("body", b""))
                if not message.get("more_body", False):
                    return budget >= 0
    except TimeoutError:
        pass
    return False


async def _problem(
    scope: Scope,
    send: Send,
    status: int,
    detail: str,
    headers: dict[str, str] | None = None,
) -> None:
    response = problem_response(status, detail, instance=scope["path"], headers=headers)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


__all__ = ["GatewayProxy", "ProxyMiddleware", "ProxySettings", "install_proxy", "upstream_routes"]
