"""The OAuth2 endpoints: token (RFC 6749), revocation (RFC 7009), introspection (RFC 7662).

Every answer, success or error, is JSON with ``Cache-Control: no-store`` and
``Pragma: no-cache``; errors have the RFC 6749 §5.2 shape, not problem+json.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.api_gateway.clients import Client
from services.api_gateway.errors import (
    NO_STORE,
    OAuthError,
    OAuthErrorResponse,
    invalid_grant,
    invalid_request,
    oauth_json,
    temporarily_unavailable,
)
from services.api_gateway.forms import FORM_MEDIA_TYPE, read_form
from services.api_gateway.refresh import NotYourToken
from services.api_gateway.revocations import RevocationNotPublished
from services.api_gateway.server import AuthorizationServer, Server, looks_like_jwt, verified_claims
from shared.auth import InvalidToken

log = logging.getLogger(__name__)

router = APIRouter(prefix="/oauth2", tags=["oauth2"])


def _form_body(*fields: tuple[str, str]) -> dict[str, Any]:
    """OpenAPI description of a form body (the handlers parse it themselves, strictly)."""
    properties = {name: {"type": "string", "description": text} for name, text in fields}
    return {
        "requestBody": {
            "required": True,
            # Every parameter, named or not, is one string: read_form refuses a repeated one (RFC 6749 §3.2).
            "content": {
                FORM_MEDIA_TYPE: {
                    "schema": {"type": "object", "properties": properties, "additionalProperties": {"type": "string"}}
                }
            },
        }
    }


async def _answer(handler: Callable[[], Awaitable[Response]]) -> Response:
    """Run ``handler``; turn OAuth errors into their response and store outages into 503."""
    try:
        return await handler()
    except OAuthError as exc:
        return exc.response()
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        log.error("token store unavailable: %s", exc or type(exc).__name__)
        return temporarily_unavailable("the token store is unavailable; retry later").response()


_ERRORS: dict[int | str, dict[str, Any]] = {400: {"model": OAuthErrorResponse}, 401: {"model": OAuthErrorResponse}}
_CLIENT_FIELDS = (("client_id", "client_secret_post only"), ("client_secret", "client_secret_post only"))


@router.post(
    "/token",
    operation_id="oauth2_token",
    summary="Issue an access token (RFC 6749)",
    response_class=Response,
    responses=_ERRORS,
    openapi_extra=_form_body(
        ("grant_type", "client_credentials | refresh_token"),
        ("scope", "space-separated, optional"),
        ("refresh_token", "for grant_type=refresh_token"),
        *_CLIENT_FIELDS,
    ),
)
async def token(request: Request, server: Server) -> Response:
    """The token endpoint: client authentication (Basic or form) and one of the supported grants."""

    async def handle() -> Response:
        form = await read_form(request)
        grant_type = form.get("grant_type")
        if grant_type is None:
            raise invalid_request("missing parameter: grant_type")
        handler = server.grants.get(grant_type)
        if handler is None:
            raise OAuthError("unsupported_grant_type", f"grant type {grant_type!r} is not supported")
        client = await server.authenticate(request, form)
        if grant_type not in client.grant_types:
            raise OAuthError("unauthorized_client", f"the client may not use the {grant_type} grant")
        server.take_token_quota(client)
        return oauth_json(await handler(server, client, form))

    return await _answer(handle)


@router.post(
    "/revoke",
    operation_id="oauth2_revoke",
    summary="Revoke a token (RFC 7009)",
    response_class=Response,
    responses=_ERRORS,
    openapi_extra=_form_body(
        ("token", "the access or refresh token"), ("token_type_hint", "access_token | refresh_token"), *_CLIENT_FIELDS
    ),
)
async def revoke(request: Request, server: Server) -> Response:
    """Revoke one of the calling client's tokens; a refresh token takes its whole grant with it.

    200 with an empty body whether or not the token was known (RFC 7009 §2.2): a client
    cannot do anything sensible with "unknown token", and an attacker learns nothing.
    """

    async def handle() -> Response:
        client, presented = await _client_and_token(server, request)
        # The hint only orders a search (RFC 7009 §2.1); the token's shape already tells.
        try:
            if looks_like_jwt(presented):
                await _revoke_access(server, client.client_id, presented)
            else:
                await _revoke_refresh(server, client.client_id, presented)
        except NotYourToken:
            raise invalid_grant("the token was not issued to this client") from None
        except RevocationNotPublished:
            # Recorded, but not every verifier has heard: ask the client to repeat (idempotent).
            raise temporarily_unavailable("revocation recorded but not yet propagated; retry") from None
        return Response(status_code=200, headers=NO_STORE)

    return await _answer(handle)


async def _client_and_token(server: AuthorizationServer, request: Request) -> tuple[Client, str]:
    """The authenticated calling client and the ``token`` it presents (revoke and introspect)."""
    form = await read_form(request)
    client = await server.authenticate(request, form)
    presented = form.get("token")
    if presented is None:
        raise invalid_request("missing parameter: token")
    return client, presented


async def _revoke_access(server: AuthorizationServer, client_id: str, token: str) -> None:
    try:
        principal = await server.signatures.verify(token)
    except InvalidToken:
        return  # forged or expired: nothing to revoke
    if principal.client_id != client_id:
        raise NotYourToken
    await server.revocations.revoke_access(
        principal.token_id, client_id=client_id, expires_at=principal.expires_at, reason="revoked_by_client"
    )


async def _revoke_refresh(server: AuthorizationServer, client_id: str, token: str) -> None:
    revoked = await server.refresh.revoke_family_of(token, client_id=client_id, reason="revoked_by_client")
    if revoked is not None:
        # RFC 7009 §2.1: revoking a refresh token should also invalidate the access tokens of its grant.
        await server.revocations.announce(revoked, reason="revoked_by_client")


@router.get(
    "/revocations",
    operation_id="oauth2_revocations",
    summary="Every revocation whose tokens have not expired (what each verifier rebuilds its list from)",
    response_class=Response,
)
async def revocation_list(server: Server) -> Response:
    """The revoked token ids and per-client cut-offs still in force, from PostgreSQL.

    Public, like a certificate revocation list: a ``jti`` is useless without its token, and
    what a client id's entry tells (that its tokens were revoked at a time) grants nothing.
    The services read it at start and every minute (``shared.auth.feed.RevocationListLoader``):
    the bus brings each revocation at once, but keeps it only as long as the broker runs.
    """

    async def handle() -> Response:
        return Response(
            (await server.revocations.ledger.live()).model_dump_json(), media_type="application/json", headers=NO_STORE
        )

    return await _answer(handle)


@router.post(
    "/introspect",
    operation_id="oauth2_introspect",
    summary="Introspect a token (RFC 7662)",
    response_class=Response,
    responses=_ERRORS,
    openapi_extra=_form_body(
        ("token", "the access or refresh token"), ("token_type_hint", "access_token | refresh_token"), *_CLIENT_FIELDS
    ),
)
async def introspect(request: Request, server: Server) -> Response:
    """Whether a token is active, and what it grants.

    A client may introspect its own tokens; an admin of the platform tenant any token.
    Anything else, like an unknown, expired or revoked token, is ``{"active": false}``.
    """

    async def handle() -> Response:
        client, presented = await _client_and_token(server, request)

        def may_see(owner: str) -> bool:
            return owner == client.client_id or client.is_platform_admin

        if looks_like_jwt(presented):
            body = await _introspect_access(server, presented, may_see)
        else:
            body = await _introspect_refresh(server, presented, may_see)
        return oauth_json(body)

    return await _answer(handle)


async def _introspect_access(server: AuthorizationServer, token: str, may_see: Callable[[str], bool]) -> dict[str, Any]:
    try:
        principal = await server.verifier.verify(token)
    except InvalidToken:
        return {"active": False}
    if not may_see(principal.client_id) or await server.revocations.is_revoked(principal.token_id):
        return {"active": False}
    claims = verified_claims(token)
    return {
        "active": True,
        "scope": claims["scope"],
        "client_id": principal.client_id,
        "sub": principal.subject,
        "tenant": principal.tenant,
        "exp": claims["exp"],
        "iat": claims["iat"],
        "jti": principal.token_id,
        "token_type": "Bearer",
        "iss": claims["iss"],
        "aud": claims["aud"],
    }


async def _introspect_refresh(
    server: AuthorizationServer, token: str, may_see: Callable[[str], bool]
) -> dict[str, Any]:
    info = await server.refresh.describe(token)
    if info is None or not info.active or not may_see(info.client_id):
        return {"active": False}
    # No token_type: RFC 7662 means the access token type of RFC 6749 §5.1 ("Bearer"),
    # which a refresh token is not.
    return {
        "active": True,
        "scope": " ".join(sorted(info.scopes)),
        "client_id": info.client_id,
        "sub": info.subject,
        "tenant": info.tenant,
        "exp": info.expires_at,
        "iat": info.issued_at,
        "iss": server.issuer,
    }
