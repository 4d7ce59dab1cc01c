"""Authentication for every service: verify the gateway's access tokens (docs/auth.md).

``shared.auth.fastapi`` has the FastAPI glue (``install_auth``, ``require``),
``shared.auth.feed`` the revocation subscriber (``register_revocation_feed``),
``shared.auth.scopes`` the vocabulary of scopes and roles.
"""

from __future__ import annotations

from shared.auth.keys import JwksKeySource, KeySource, KeysUnavailable, LocalKeySource
from shared.auth.principal import InvalidToken, Principal
from shared.auth.revoked import RevokedTokens
from shared.auth.tokens import TokenVerifier, mint_access_token

__all__ = [
    "InvalidToken",
    "JwksKeySource",
    "KeySource",
    "KeysUnavailable",
    "LocalKeySource",
    "Principal",
    "RevokedTokens",
    "TokenVerifier",
    "mint_access_token",
]
