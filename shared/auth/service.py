"""The verifier every service uses for the platform's access tokens (the kit's ``TokenAuth`` builds it)."""

from __future__ import annotations

import httpx

from shared.auth.keys import JwksKeySource
from shared.auth.revoked import RevokedTokens
from shared.auth.tokens import TokenVerifier
from shared.settings import PlatformSettings


def platform_verifier(settings: PlatformSettings, jwks_url: str, http: httpx.AsyncClient) -> TokenVerifier:
    """A verifier of the platform's access tokens: keys from the gateway's JWKS at ``jwks_url``
    (fetched over ``http``), and a revocation set for the bus and the gateway's revocation list to
    fill (incomplete, so refusing every token, until that list was read once)."""
    return TokenVerifier(
        issuer=settings.token_issuer,
        audience=settings.hats_token_audience,
        keys=JwksKeySource(jwks_url, http),
        revoked=RevokedTokens(complete=False),
    )
