"""Grant handlers of the token endpoint: ``client_credentials`` (RFC 6749 §4.4) and ``refresh_token`` (§6).

Each takes the authenticated client and the form and returns the token response body,
or raises ``OAuthError``. ``GRANTS`` is what the token endpoint and the metadata
document offer; a new grant (authorization code with PKCE) is one more entry.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from services.api_gateway.clients import Client
from services.api_gateway.errors import invalid_grant, invalid_request, invalid_scope
from services.api_gateway.refresh import Replayed
from services.api_gateway.revocations import RevocationNotPublished
from services.api_gateway.server import AuthorizationServer, GrantHandler, parse_scope

log = logging.getLogger(__name__)

CLIENT_CREDENTIALS = "client_credentials"
REFRESH_TOKEN = "refresh_token"


async def client_credentials(server: AuthorizationServer, client: Client, form: dict[str, str]) -> dict[str, Any]:
    """An access token for the client itself, with the requested scopes (default: all it holds).

    A refresh token comes with it only if the client's registration includes the
    ``refresh_token`` grant (RFC 6749 §4.4.3: not by default).
    """
    requested = parse_scope(form)
    if requested is not None and not requested <= client.scopes:
        raise invalid_scope("the requested scope exceeds the scopes granted to the client")
    scopes = client.scopes if requested is None else requested
    if not scopes:
        raise invalid_scope("the client holds no scopes")
    token, claims = server.mint(client, scopes)
    refresh_token = None
    if REFRESH_TOKEN in client.grant_types:
        refresh_token = await server.refresh.start_family(
            client_id=client.client_id,
            tenant=client.tenant,
            subject=client.subject,
            scopes=scopes,
            access_jti=claims["jti"],
            access_expires_at=claims["exp"],
        )
    return server.token_response(token, claims, refresh_token)


async def refresh_token(server: AuthorizationServer, client: Client, form: dict[str, str]) -> dict[str, Any]:
    """Rotate a refresh token: new access token, new refresh token, same family.

    A used token presented again revokes the family and its live access tokens
    (published as ``TokenRevoked``) and is answered ``invalid_grant``.
    """
    presented = form.get("refresh_token")
    if presented is None:
        raise invalid_request("missing parameter: refresh_token")
    result = await server.refresh.rotate(
        presented,
        client_id=client.client_id,
        tenant=client.tenant,
        requested=parse_scope(form),
        allowed=client.scopes,
        mint=lambda scopes: server.mint(client, scopes),
    )
    if isinstance(result, Replayed):
        log.warning(
            "refresh token of client %s used twice: its grant is revoked (%d access tokens)",
            client.client_id,
            len(result.revoked),
        )
        # Recorded in PostgreSQL in the same transaction as the family's revocation; if the bus did
        # not take it now, the revocation sweep publishes it once it does. The answer is the same.
        with contextlib.suppress(RevocationNotPublished):
            await server.revocations.announce(result.revoked, reason="refresh_token_reuse")
        raise invalid_grant("refresh token already used; the grant is revoked")
    return server.token_response(result.access_token, result.claims, result.refresh_token)


GRANTS: dict[str, GrantHandler] = {CLIENT_CREDENTIALS: client_credentials, REFRESH_TOKEN: refresh_token}
