"""Discovery: the authorisation-server metadata (RFC 8414) and the public signing keys (JWKS, RFC 7517)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter
from fastapi.responses import Response

from services.api_gateway.server import AuthorizationServer, Server
from shared.auth.scopes import CLIENT_SCOPES

router = APIRouter(tags=["oauth2"])

CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
#: Verifiers refetch on an unknown kid anyway (a rotation), so a short public cache is safe.
_PUBLIC_CACHE = {"Cache-Control": "public, max-age=300"}


def authorization_server_metadata(server: AuthorizationServer) -> dict[str, Any]:
    """The RFC 8414 document, derived from what the server actually offers."""
    issuer = server.issuer.rstrip("/")
    document: dict[str, Any] = {
        "issuer": issuer,
        "token_endpoint": f"{issuer}/oauth2/token",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "revocation_endpoint": f"{issuer}/oauth2/revoke",
        "introspection_endpoint": f"{issuer}/oauth2/introspect",
        "grant_types_supported": sorted(server.grants),
        "response_types_supported": list(server.response_types),
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "scopes_supported": sorted(CLIENT_SCOPES),
    }
    if server.authorization_endpoint is not None:
        # Only with an authorization endpoint: PKCE is a property of the code flow.
        document["authorization_endpoint"] = f"{issuer}{server.authorization_endpoint}"
        document["code_challenge_methods_supported"] = ["S256"]
    return document


@router.get(
    "/.well-known/oauth-authorization-server",
    operation_id="oauth_metadata",
    summary="Authorisation-server metadata (RFC 8414)",
    response_class=Response,
)
async def metadata(server: Server) -> Response:
    return Response(
        orjson.dumps(authorization_server_metadata(server)), media_type="application/json", headers=_PUBLIC_CACHE
    )


@router.get(
    "/.well-known/jwks.json", operation_id="jwks", summary="Public signing keys (JWK set)", response_class=Response
)
async def jwks(server: Server) -> Response:
    """Every key a valid token may name: the active one and those retired less than ``retire_after`` ago."""
    return Response(orjson.dumps(server.keyring.public_jwks()), media_type="application/json", headers=_PUBLIC_CACHE)
