"""The standard wiring of a service that serves the public API: the gateway's tokens, verified locally."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from faststream.kafka import KafkaBroker

from shared.auth.fastapi import install_auth
from shared.auth.feed import register_revocation_feed
from shared.auth.keys import JwksKeySource
from shared.auth.revoked import RevokedTokens
from shared.auth.tokens import TokenVerifier
from shared.settings import PlatformSettings


def platform_verifier(settings: PlatformSettings, http: httpx.AsyncClient) -> TokenVerifier:
    """A verifier of the platform's access tokens, with the gateway's JWKS fetched over ``http``."""
    return TokenVerifier(
        issuer=settings.token_issuer,
        audience=settings.hats_token_audience,
        keys=JwksKeySource(settings.url_of("api-gateway") + "/.well-known/jwks.json", http),
        revoked=RevokedTokens(),
    )


def protect(app: FastAPI, verifier: TokenVerifier, broker: KafkaBroker) -> None:
    """Make ``require(...)`` work on ``app`` and keep ``verifier``'s revocations fed from the bus.

    Call before ``broker.start()``: the revocation feed is a subscriber.
    """
    install_auth(app, verifier)
    if verifier.revoked is not None:
        register_revocation_feed(broker, verifier.revoked)
