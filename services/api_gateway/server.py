"""The authorisation server's state and the steps every OAuth endpoint shares.

``AuthorizationServer`` is the gateway's state, built once when it starts and reached by
the route modules (``oauth``, ``metadata``) as ``Server``; they only translate HTTP.
Grants are looked up in ``grants`` by ``grant_type``, and ``response_types`` /
``authorization_endpoint`` are empty until an ``/oauth2/authorize`` endpoint exists;
the metadata document is derived from them, so adding the authorization-code grant
(with PKCE) is a new grant handler, a new route and one line here, not a rewrite.
"""

from __future__ import annotations

import base64
import logging
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from fastapi import Request

from services.api_gateway.bruteforce import AuthFailureGuard
from services.api_gateway.clients import Client, ClientDirectory, DirectoryUnavailable, read_credentials
from services.api_gateway.errors import OAuthError, invalid_client, invalid_scope, temporarily_unavailable
from services.api_gateway.keys import KeyRing
from services.api_gateway.refresh import RefreshTokenStore
from services.api_gateway.revocations import Revocations
from services.api_gateway.settings import GatewaySettings
from shared.auth import TokenVerifier, mint_access_token
from shared.kit.service import state_of
from shared.ratelimit import SlidingWindowLimiter

log = logging.getLogger(__name__)

#: A grant handler: the authenticated client and the form, to the token response body.
GrantHandler = Callable[["AuthorizationServer", Client, dict[str, str]], Awaitable[dict[str, Any]]]
#: RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")


@dataclass
class AuthorizationServer:
    """Everything the OAuth endpoints need, built once per process."""

    settings: GatewaySettings
    issuer: str
    audience: str
    keyring: KeyRing
    directory: ClientDirectory
    guard: AuthFailureGuard
    refresh: RefreshTokenStore
    revocations: Revocations
    #: Verifies the gateway's own access tokens (local keys, local + bus revocations).
    verifier: TokenVerifier
    #: The same checks without the revocation list: revoking a revoked token again must still
    #: find it (a revocation repeated after the bus failed publishes it again).
    signatures: TokenVerifier
    #: Successful token requests per client (``token_requests_per_client``).
    token_quota: SlidingWindowLimiter | None = None
    grants: dict[str, GrantHandler] = field(default_factory=dict)
    #: ``response_types_supported``; stays empty until the authorization endpoint exists.
    response_types: list[str] = field(default_factory=list)
    #: Path of ``/oauth2/authorize`` once it exists (adds it and PKCE S256 to the metadata).
    authorization_endpoint: str | None = None

    async def authenticate(self, request: Request, form: dict[str, str]) -> Client:
        """The calling client, authenticated by user-service; ``OAuthError`` otherwise.

        A client_id or address locked out after repeated failures is refused (429)
        before user-service is asked.
        """
        credentials = read_credentials(request.headers.get("authorization"), form)
        address = request.client.host if request.client else None
        wait = self.guard.retry_after(credentials.client_id, address)
        if wait:
            raise temporarily_unavailable(
                "too many failed client authentications; retry later", status=429, retry_after_s=wait
            )
        try:
            client = await self.directory.authenticate(credentials)
        except DirectoryUnavailable as exc:
            log.warning("client authentication unavailable: %s", exc)
            raise temporarily_unavailable("client authentication is unavailable; retry later") from None
        if client is None:
            self.guard.record_failure(credentials.client_id, address)
            raise invalid_client()
        return client

    def take_token_quota(self, client: Client) -> None:
        """Count one token request of an authenticated client; 429 once it is over its quota.

        Failed authentications have their own lockout; this bounds what a *valid* client can
        make the gateway write (a refresh-capable grant stores rows for a month).
        """
        if self.token_quota is None:
            return
        wait = self.token_quota.acquire(client.client_id)
        if wait > 0:
            raise temporarily_unavailable(
                "too many token requests for this client; reuse the access token until it expires",
                status=429,
                retry_after_s=math.ceil(wait),
            )

    def mint(self, client: Client, scopes: frozenset[str]) -> tuple[str, dict[str, Any]]:
        """Sign an access token for ``client`` with ``scopes`` (claims per docs/auth.md)."""
        return mint_access_token(
            self.keyring.active.key,
            issuer=self.issuer,
            audience=self.audience,
            subject=client.subject,
            client_id=client.client_id,
            tenant=client.tenant,
            scopes=scopes,
            ttl_s=self.settings.access_token_ttl_s,
        )

    def token_response(self, token: str, claims: dict[str, Any], refresh_token: str | None = None) -> dict[str, Any]:
        """The RFC 6749 §5.1 success body."""
        body: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": claims["exp"] - claims["iat"],
            "scope": claims["scope"],
        }
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        return body


def parse_scope(form: dict[str, str]) -> frozenset[str] | None:
    """The ``scope`` parameter as a set (``None`` if absent); ``invalid_scope`` if malformed."""
    raw = form.get("scope")
    if raw is None:
        return None
    scopes = frozenset(s for s in raw.split(" ") if s)
    if not scopes or any(not _SCOPE_TOKEN.match(s) for s in scopes):
        raise invalid_scope("malformed scope parameter")
    return scopes


def looks_like_jwt(token: str) -> bool:
    """Our access tokens are compact JWS (two dots); refresh tokens are base64url without dots."""
    return token.count(".") == 2


def verified_claims(token: str) -> dict[str, Any]:
    """The payload of a token whose signature was already verified (for iat, iss, aud)."""
    payload = token.split(".")[1]
    return orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


#: ``server: Server`` in a route's parameters gives the running gateway's authorisation server.
Server = Annotated[AuthorizationServer, state_of(AuthorizationServer)]

__all__ = [
    "AuthorizationServer",
    "GrantHandler",
    "OAuthError",
    "Server",
    "looks_like_jwt",
    "parse_scope",
    "verified_claims",
]
