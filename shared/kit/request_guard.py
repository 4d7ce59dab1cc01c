"""What every service refuses before any route, fast path or proxy reads a request.

``build_app`` installs :class:`RequestGuard` on every service's app, so no service has
to remember it and every path in (FastAPI's routes, the gateway's front door, a
service's fast path falling through) passes it:

* **One ``Authorization`` header or none.** With two, the gateway checked the last and
  forwarded both while the services used the first: a caller could pass the gateway
  with one token and act at the service with another. Refused with 400 problem+json.
* **Authentication before the body.** FastAPI reads and parses a route's whole body
  before it solves the route's dependencies (``require(...)`` among them), so on a
  service's direct port anyone could have it parse a multi-megabyte JSON body for
  nothing. On an app that verifies tokens (``ServiceApp.token_verifier``, set by the
  kit's ``TokenAuth``), a request that has a body must carry a valid bearer token
  before it reaches the app; the scopes are still the routes' to check. Requests
  without a body (health, metrics, reads) go on as before: their routes authenticate
  as they did, and nothing costly happens before that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from shared.auth.bearer import AMBIGUOUS_AUTHORIZATION, CHALLENGE, MISSING_TOKEN, bearer_token, refusal
from shared.auth.principal import InvalidToken
from shared.kit.problems import problem_response

if TYPE_CHECKING:
    from shared.kit.app import ServiceApp


class RequestGuard:
    """Pure ASGI middleware of every service app (see the module doc)."""

    def __init__(self, app: ASGIApp, *, service_app: ServiceApp) -> None:
        self.app = app
        self.service_app = service_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # One pass over the headers, as uvicorn parsed them (lower-case names).
        authorization: bytes | None = None
        authorizations = 0
        has_body = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
                authorizations += 1
            elif name == b"content-length":
                has_body |= value != b"0"
            elif name == b"transfer-encoding":
                has_body = True
        if authorizations > 1:
            await _refuse(scope, send, 400, AMBIGUOUS_AUTHORIZATION)
            return
        verifier = self.service_app.token_verifier
        if has_body and verifier is not None:
            token = bearer_token(authorization)
            if token is None:
                await _refuse(scope, send, 401, MISSING_TOKEN, {"WWW-Authenticate": CHALLENGE})
                return
            try:
                # The verifier remembers verified tokens, so the route's own check costs no second signature check.
                await verifier.verify(token)
            except InvalidToken as exc:
                status, detail, headers = refusal(exc)
                await _refuse(scope, send, status, detail, headers)
                return
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    # The body is never handed to the app: uvicorn discards whatever of it still arrives.
    response = problem_response(status, detail, instance=scope["path"], headers=headers)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


__all__ = ["RequestGuard"]
