"""FastAPI glue: ``require(*scopes)`` on a service's routes; ``install_auth`` gives the app its verifier
(the kit's ``TokenAuth`` dependency does that for declared services).

Refusals are problem+json (``shared.kit.problems.Problem``) with the
``WWW-Authenticate`` challenge of RFC 6750 §3::

    401  Bearer realm="hats"                                        (no bearer token)
    401  Bearer realm="hats", error="invalid_token", error_description="token expired"
    403  Bearer realm="hats", error="insufficient_scope", scope="market:read"
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.auth.bearer import AMBIGUOUS_AUTHORIZATION, CHALLENGE, MISSING_TOKEN, refusal
from shared.auth.principal import InvalidToken, Principal
from shared.auth.tokens import TokenVerifier
from shared.kit.problems import Problem

# Parses "Authorization: Bearer <token>" (scheme case-insensitive; any other scheme
# counts as no token) and declares the bearer scheme in the OpenAPI document, so
# /docs offers "Authorize". auto_error=False: the refusals below are ours.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="JWT",
    description="An access token from the api-gateway's /oauth2/token",
)


def install_auth(app: FastAPI, verifier: TokenVerifier) -> None:
    """Make ``verifier`` the one ``require`` uses on ``app``'s routes (``ServiceApp.token_verifier``)."""
    app.token_verifier = verifier  # type: ignore[attr-defined]  # declared on ServiceApp; plain apps in tests


def require(*scopes: str) -> Any:
    """A dependency that returns the caller's :class:`Principal`, holding every one of ``scopes``.

    Use as a parameter default (``principal: Principal = require(TRADE)``) or in
    ``dependencies=[require(ADMIN)]``. With no scopes, any valid token passes.
    """
    for scope in scopes:
        if not scope or " " in scope:
            raise ValueError(f"invalid scope {scope!r}")
    needed = frozenset(scopes)
    insufficient = {"WWW-Authenticate": f'{CHALLENGE}, error="insufficient_scope", scope="{" ".join(scopes)}"'}
    detail = f"requires scope {' '.join(scopes)}"
    return Depends(_dependency(needed, insufficient, detail))


def _dependency(
    needed: frozenset[str], insufficient: dict[str, str], detail: str
) -> Callable[..., Awaitable[Principal]]:
    async def authorised(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
    ) -> Principal:
        if len(request.headers.getlist("authorization")) > 1:
            # HTTPBearer reads the first; another reader may have checked another one.
            raise Problem(400, AMBIGUOUS_AUTHORIZATION)
        if credentials is None:
            raise Problem(401, MISSING_TOKEN, headers={"WWW-Authenticate": CHALLENGE})
        try:
            principal = await _verifier(request).verify(credentials.credentials)
        except InvalidToken as exc:
            status, refused, headers = refusal(exc)
            raise Problem(status, refused, headers=headers) from None
        if not needed <= principal.scopes:
            raise Problem(403, detail, headers=insufficient)
        return principal

    return authorised


def _verifier(request: Request) -> TokenVerifier:
    verifier = getattr(request.app, "token_verifier", None)
    if not isinstance(verifier, TokenVerifier):
        # A wiring bug, not the caller's fault: surfaces as a 500 and in the log.
        raise RuntimeError("install_auth(app, verifier) was not called for this app")
    return verifier
