"""Security headers on every gateway response, and opt-in CORS.

The API answers JSON only, so its Content-Security-Policy forbids everything
(``default-src 'none'``). The Swagger UI page at ``/docs`` is the one HTML page: it
loads its script, stylesheet and icon from the gateway itself (``shared.kit.docs``, no
CDN) and runs one inline script; its policy allows ``'self'`` and the inline scripts of
that very response, by hash, never ``'unsafe-inline'`` for scripts.

Wiring (after ``install_proxy``, so both wrap the proxied requests too)::

    install_security(app, cors_origins=settings.cors_origins)
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Sequence
from typing import Any

from starlette.middleware.cors import CORSMiddleware

#: Responses of these path prefixes must never be cached (tokens, tenant data) unless the
#: responder chose a policy itself.
NO_STORE_PREFIXES = ("/api/", "/oauth2/")
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
HSTS = "max-age=31536000; includeSubDomains"

_COMMON = ((b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer"))
#: Fields this middleware owns: whatever an inner app set for them is replaced.
_OWNED = frozenset(
    {
        b"x-content-type-options",
        b"x-frame-options",
        b"referrer-policy",
        b"content-security-policy",
        b"strict-transport-security",
    }
)
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def docs_csp(script_hashes: Iterable[str] = ()) -> str:
    """The policy of the Swagger UI page: its own assets, its own inline scripts (by hash), and
    ``'self'`` for the OpenAPI document and the token endpoint ("Authorize"). No other origin."""
    scripts = " ".join(["'self'", *(f"'sha256-{h}'" for h in script_hashes)])
    # Swagger UI sets style attributes at run time, hence 'unsafe-inline' for styles only;
    # its icons are data: URIs.
    return (
        f"default-src 'none'; script-src {scripts}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'"
    )


class SecurityHeadersMiddleware:
    """Pure ASGI middleware adding the security headers to every HTTP response.

    ``X-Content-Type-Options``, ``X-Frame-Options``, ``Referrer-Policy`` and the CSP always;
    ``Cache-Control: no-store`` under ``/api/`` and ``/oauth2/`` unless the response has a
    Cache-Control; ``Strict-Transport-Security`` only for requests that came over https
    (the scope's scheme or ``X-Forwarded-Proto``: browsers ignore HSTS over plain http).
    Paths in ``docs_paths`` (and below them) get :func:`docs_csp` instead of the API policy.
    """

    def __init__(self, app: Any, *, docs_paths: Sequence[str] = ("/docs",)) -> None:
        self.app = app
        self.docs_paths = tuple(docs_paths)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if any(path == p or path.startswith(p + "/") for p in self.docs_paths):
            await self._docs(scope, receive, send)
            return
        https, no_store = is_https(scope), path.startswith(NO_STORE_PREFIXES)

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = secure_api_headers(message.get("headers", ()), https=https, no_store=no_store)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _docs(self, scope: dict, receive: Any, send: Any) -> None:
        """Buffer the (small) docs page to hash its inline scripts into the policy; the
        assets below it (Swagger UI's script, stylesheet, icon) stream through."""
        start: dict | None = None
        parts: list[bytes] = []
        https = is_https(scope)

        async def buffered(message: dict) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if _is_html(message):
                    start = message
                else:
                    await send({**message, "headers": _docs_headers(message.get("headers", ()), (), https)})
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            parts.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(parts)
            hashes = [base64.b64encode(hashlib.sha256(s).digest()).decode() for s in _INLINE_SCRIPT.findall(body)]
            await send({**start, "headers": _docs_headers(start.get("headers", ()), hashes, https)})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, buffered)


def _is_html(start: dict) -> bool:
    return any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in start.get("headers", ()))


def _docs_headers(headers: Iterable[tuple[bytes, bytes]], script_hashes: Iterable[str], https: bool) -> list:
    """A docs response's headers with the security headers and :func:`docs_csp` set."""
    out = [(k, v) for k, v in headers if k.lower() not in _OWNED]
    out.extend(_COMMON)
    out.append((b"content-security-policy", docs_csp(script_hashes).encode()))
    if https:
        out.append((b"strict-transport-security", HSTS.encode()))
    return out


_API_EXTRA = (*_COMMON, (b"content-security-policy", API_CSP.encode()))
_HSTS = (b"strict-transport-security", HSTS.encode())


def secure_api_headers(headers: Iterable[tuple[bytes, bytes]], *, https: bool, no_store: bool) -> list:
    """An API response's headers with the security headers set (ours replace the app's)."""
    out = [(k, v) for k, v in headers if k.lower() not in _OWNED]
    if no_store and not any(k.lower() == b"cache-control" for k, _ in out):
        out.append((b"cache-control", b"no-store"))
    out.extend(_API_EXTRA)
    if https:
        out.append(_HSTS)
    return out


def is_https(scope: dict) -> bool:
    """Whether the request came over https (the scope's scheme, or ``X-Forwarded-Proto``)."""
    if scope.get("scheme") == "https":
        return True
    for name, value in scope["headers"]:
        if name == b"x-forwarded-proto":
            return value.split(b",")[0].strip().lower() == b"https"
    return False


def configure_cors(app: Any, origins: Sequence[str] | None) -> bool:
    """Allow browser calls from ``origins`` (exact origins, e.g. ``https://app.example.com``).

    Off when ``origins`` is empty or ``None`` (the default: no browser app is trusted).
    Credentials are bearer tokens in ``Authorization``, never cookies, so
    ``allow_credentials`` stays off. Returns whether CORS was enabled. Add it after the
    proxy so preflights (which carry no token) are answered before authentication.
    """
    if not origins:
        return False
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(origins),
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "X-Request-ID", "traceparent", "tracestate"],
        expose_headers=["X-Request-ID", "Retry-After", "WWW-Authenticate", "Location"],
        allow_credentials=False,
        max_age=600,
    )
    return True


def install_security(
    app: Any, *, cors_origins: Sequence[str] | None = None, docs_paths: Sequence[str] = ("/docs",)
) -> None:
    """CORS (when configured) and then the security headers, outermost, so that every
    response -- preflights and errors included -- carries them."""
    configure_cors(app, cors_origins)
    app.add_middleware(SecurityHeadersMiddleware, docs_paths=docs_paths)
    _secure_unexpected_errors(app)


def _secure_unexpected_errors(app: Any) -> None:
    """Give the 500 of an unhandled exception the headers too.

    Starlette answers it from ``ServerErrorMiddleware``, which wraps every middleware
    added with ``add_middleware`` (ours included); only the handler it calls is ours to wrap.
    """
    handler = app.exception_handlers.get(Exception)
    if handler is None:
        return

    async def secured(request: Any, exc: Exception) -> Any:
        response = await handler(request, exc)
        secured_headers = secure_api_headers(response.raw_headers, https=is_https(request.scope), no_store=True)
        response.raw_headers[:] = secured_headers
        return response

    app.add_exception_handler(Exception, secured)


__all__ = [
    "API_CSP",
    "SecurityHeadersMiddleware",
    "configure_cors",
    "docs_csp",
    "install_security",
    "is_https",
    "secure_api_headers",
]
