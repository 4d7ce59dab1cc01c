"""Access tokens: minted by the gateway, verified by every service (docs/auth.md, "Tokens")."""

from __future__ import annotations

import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import orjson
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey
from joserfc.jws import extract_compact, serialize_compact, validate_compact

from shared.auth.jose import ACCEPTED_TYPES, ALGORITHM, CURVE, HEADER_PARAMETERS, REGISTRY, TOKEN_TYPE
from shared.auth.keys import KeySource, KeysUnavailable
from shared.auth.principal import InvalidToken, Principal, VerifierNotReady
from shared.auth.revoked import RevokedTokens

#: Claims every access token carries (besides ``iss`` and ``aud``, which must also match).
REQUIRED_CLAIMS = ("iss", "aud", "sub", "client_id", "tenant", "scope", "iat", "exp", "jti")
#: Ours are ~400 characters; anything far longer is refused before any parsing.
MAX_TOKEN_LENGTH = 4096


class TokenVerifier:
    """Verifies bearer access tokens and turns them into a :class:`Principal`.

    Only ``EdDSA`` over Ed25519 keys from ``keys`` is accepted; ``iss`` and ``aud``
    must match; ``exp``, ``nbf`` and ``iat`` are checked against the wall clock with
    ``leeway_s``. A verified token is remembered (bounded LRU, until its ``exp``, and only
    while the key source's ``generation`` stays the same), so a client reusing its token
    costs a dict lookup; expiry and revocation are still checked on every call.
    """

    def __init__(
        self,
        issuer: str,
        audience: str,
        keys: KeySource,
        revoked: RevokedTokens | None = None,
        leeway_s: int = 0,
        cache_size: int = 10_000,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.keys = keys
        self.revoked = revoked
        self.leeway_s = leeway_s
        # token -> (principal, the key source's generation it was verified in)
        self._cache: OrderedDict[str, tuple[Principal, int]] = OrderedDict()
        self._cache_size = cache_size

    async def verify(self, token: str) -> Principal:
        """The principal of ``token``; raises :class:`InvalidToken` with the reason otherwise."""
        now = time.time()
        generation = self.keys.generation
        cached = self._cache.get(token)
        if cached is None or cached[1] != generation:
            # Not seen, or seen under a key set that has changed since (its key may be gone).
            principal = await self._verify_uncached(token, now)
            self._check_revoked(principal)
            if self._cache_size > 0:
                # The generation after the lookup: a refetch during it started a new one.
                self._cache[token] = (principal, self.keys.generation)
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            return principal
        principal = cached[0]
        if now >= principal.expires_at + self.leeway_s:
            self._cache.pop(token, None)
            raise InvalidToken("token expired")
        self._check_revoked(principal)
        self._cache.move_to_end(token)
        return principal

    def _check_revoked(self, principal: Principal) -> None:
        revoked = self.revoked
        if revoked is None:
            return
        if not revoked.complete:
            # Not yet rebuilt from the gateway's record: a revoked token could pass.
            raise VerifierNotReady("revocation list not loaded yet")
        if revoked.refuses(principal):
            raise InvalidToken("token revoked")

    async def _verify_uncached(self, token: str, now: float) -> Principal:
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise InvalidToken("malformed token")
        try:
            jws = extract_compact(token.encode("ascii"), registry=REGISTRY)
        except (JoseError, ValueError, TypeError):
            raise InvalidToken("malformed token") from None
        header = jws.headers()
        # The header is checked before any key is looked up: "none", HS256 signed with
        # the public key, RS256… never reach a signature check (no key confusion).
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("unsupported signature algorithm")
        if not header.keys() <= HEADER_PARAMETERS:
            raise InvalidToken("unsupported token header")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYPES:
            raise InvalidToken("not an access token")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("token names no signing key")
        try:
            key = await self.keys.get(kid)
        except KeysUnavailable:
            raise InvalidToken("signing keys unavailable") from None
        if key is None:
            raise InvalidToken("unknown signing key")
        try:
            valid = validate_compact(jws, key, registry=REGISTRY)
        except (JoseError, ValueError, TypeError):
            valid = False
        if not valid:
            raise InvalidToken("bad signature")
        try:
            claims = orjson.loads(jws.payload or b"")
        except orjson.JSONDecodeError:
            raise InvalidToken("malformed token") from None
        if not isinstance(claims, dict):
            raise InvalidToken("malformed token")
        return self._principal_of(claims, now)

    def _principal_of(self, claims: dict[str, Any], now: float) -> Principal:
        for name in REQUIRED_CLAIMS:
            if name not in claims:
                raise InvalidToken(f"missing claim: {name}")
        if claims["iss"] != self.issuer:
            raise InvalidToken("wrong issuer")
        aud = claims["aud"]
        if not (aud == self.audience or (isinstance(aud, list) and self.audience in aud)):
            raise InvalidToken("wrong audience")
        exp, iat = _number(claims, "exp"), _number(claims, "iat")
        if now >= exp + self.leeway_s:
            raise InvalidToken("token expired")
        if iat > now + self.leeway_s:
            raise InvalidToken("token issued in the future")
        if "nbf" in claims and _number(claims, "nbf") > now + self.leeway_s:
            raise InvalidToken("token not yet valid")
        scope = claims["scope"]
        if not isinstance(scope, str):
            raise InvalidToken("invalid claim: scope")
        return Principal(
            subject=_text(claims, "sub"),
            client_id=_text(claims, "client_id"),
            tenant=_text(claims, "tenant"),
            scopes=frozenset(scope.split()),
            token_id=_text(claims, "jti"),
            expires_at=math.floor(exp),
            issued_at=math.floor(iat),
        )


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims[name]
    # bool is an int in Python, not a NumericDate in JSON.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidToken(f"invalid claim: {name}")
    return value


def _text(claims: dict[str, Any], name: str) -> str:
    value = claims[name]
    if not isinstance(value, str) or not value:
        raise InvalidToken(f"invalid claim: {name}")
    return value


def mint_access_token(
    key: OKPKey,
    *,
    issuer: str,
    audience: str,
    subject: str,
    client_id: str,
    tenant: str,
    scopes: Iterable[str],
    ttl_s: int,
    now: int | None = None,
    jti: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """Sign an access token with ``key`` (a private Ed25519 OKP key); returns ``(token, claims)``.

    The header names the key (``kid``; set to its RFC 7638 thumbprint if the key has
    none) and the type ``at+jwt``. Scopes are written sorted, space-separated.
    """
    if not isinstance(key, OKPKey) or key.curve_name != CURVE or not key.is_private:
        raise ValueError("an access token is signed with a private Ed25519 OKP key")
    granted = sorted(set(scopes))
    if any(not s or not s.isprintable() or " " in s for s in granted):
        raise ValueError(f"invalid scope in {granted!r}")
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    issued = int(time.time()) if now is None else int(now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "client_id": client_id,
        "tenant": tenant,
        "scope": " ".join(granted),
        "iat": issued,
        "exp": issued + int(ttl_s),
        "jti": jti or uuid.uuid4().hex,
    }
    key.ensure_kid()
    header = {"typ": TOKEN_TYPE, "alg": ALGORITHM, "kid": key.kid}
    return serialize_compact(header, orjson.dumps(claims), key, registry=REGISTRY), claims
