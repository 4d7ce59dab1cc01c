"""The client tier's API key: metatrader-connector and data-collector off loopback.

The client tier (``Group.CLIENT``: 9001, 9002...) runs on the trader's PC and has no
OAuth of its own: it binds to loopback, where only that PC reaches it. Bound to any other
address (docker compose, a second machine) it must authenticate its callers, so the kit:

* refuses to start a client-tier service bound off loopback without ``HATS_CLIENT_API_KEY``;
* once a key is configured (on any address), answers every request but ``/healthz`` with
  401 unless it carries ``X-API-Key: <the key>`` (compared in constant time);
* and the client tier's own calls to each other carry it (:func:`client_key_headers`).

A shared key rather than tokens from the gateway: the client tier must keep working while
the server is unreachable (that is what data-collector's disk buffer is for).
"""

from __future__ import annotations

import hmac
import ipaddress

from starlette.types import ASGIApp, Receive, Scope, Send

from shared import ports
from shared.kit.problems import problem_response
from shared.settings import PlatformSettings

HEADER = "X-API-Key"
_HEADER = HEADER.lower().encode("latin-1")
#: Liveness only (the container's health check); it says nothing about the terminal or the buffer.
_OPEN_PATHS = frozenset({"/healthz"})


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps a port reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name or a wildcard: reachable from elsewhere


def required_key(service: ports.Service, settings: PlatformSettings) -> bytes | None:
    """The key a client-tier service requires (``None``: none, or not the client tier).

    Raises ``RuntimeError`` for a client-tier service bound off loopback without one.
    """
    if service.group is not ports.Group.CLIENT:
        return None
    key = settings.hats_client_api_key
    if key is None or not key.get_secret_value():
        if not is_loopback(settings.hats_bind_host):
            raise RuntimeError(
                f"{service.name} binds {settings.hats_bind_host}, beyond this machine: "
                "set HATS_CLIENT_API_KEY (its callers send it as X-API-Key)"
            )
        return None
    return key.get_secret_value().encode()


def client_key_headers(settings: PlatformSettings) -> dict[str, str]:
    """What a client-tier service sends when it calls another one (empty without a key)."""
    key = settings.hats_client_api_key
    return {HEADER: key.get_secret_value()} if key is not None and key.get_secret_value() else {}


class ClientKeyMiddleware:
    """Pure ASGI: 401 for a request without the right ``X-API-Key`` (``/healthz`` excepted)."""

    def __init__(self, app: ASGIApp, *, key: bytes) -> None:
        self.app = app
        self.key = key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = next((value for name, value in scope["headers"] if name == _HEADER), b"")
        if hmac.compare_digest(given, self.key):
            await self.app(scope, receive, send)
            return
        response = problem_response(401, f"the client tier requires its API key in {HEADER}", instance=scope["path"])
        await send({"type": "http.response.start", "status": 401, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


__all__ = ["HEADER", "ClientKeyMiddleware", "client_key_headers", "is_loopback", "required_key"]
