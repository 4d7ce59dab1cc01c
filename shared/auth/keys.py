"""Where a verifier finds the gateway's public keys: its keyring in-process, or its JWKS over HTTP."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import httpx
import orjson
from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry, Key, KeySet, OKPKey

from shared.auth.jose import is_signing_key

log = logging.getLogger(__name__)


class KeysUnavailable(Exception):
    """The key source cannot tell whether a kid is valid (the JWKS could not be fetched)."""


class KeySource(Protocol):
    """Finds the verification key of a ``kid``."""

    async def get(self, kid: str) -> OKPKey | None:
        """The Ed25519 key named ``kid``; ``None`` if there is none; ``KeysUnavailable`` if unknowable now."""
        ...

    @property
    def generation(self) -> int:
        """Changes whenever the trusted keys may have changed (a verifier's cache of verified tokens
        is only good for the generation it was filled in); cheap, it is read on every request."""
        ...


class LocalKeySource:
    """The keys of an in-process keyring (the gateway verifying its own tokens).

    ``get_keyset`` is called on every lookup, so a rotation of the keyring is seen at
    once; the verifier's token cache keeps this off the hot path. ``generation`` looks at
    the keyring at most every ``recheck_s`` (it runs on every request), so a key removed
    from the ring stops verifying cached tokens within that time.
    """

    def __init__(
        self,
        get_keyset: Callable[[], KeySet],
        *,
        recheck_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._get_keyset = get_keyset
        self._recheck_s = recheck_s
        self._clock = clock
        self._checked_at = -float("inf")
        self._keyset_seen: KeySet | None = None
        self._generation = 0

    @property
    def generation(self) -> int:
        now = self._clock()
        if now - self._checked_at >= self._recheck_s:
            self._checked_at = now
            keyset = self._get_keyset()
            if keyset is not self._keyset_seen:  # the keyring builds a new KeySet whenever it changes
                self._keyset_seen = keyset
                self._generation += 1
        return self._generation

    async def get(self, kid: str) -> OKPKey | None:
        # A keyring holds a handful of keys: a scan is cheaper than keeping an index in sync.
        for key in self._get_keyset().keys:
            if key.kid == kid and is_signing_key(key):
                return key  # type: ignore[return-value]
        return None


class JwksKeySource:
    """The gateway's published JWKS (``/.well-known/jwks.json``), fetched lazily and cached.

    An unknown kid triggers a refetch (a rotation published a new key), but at most
    one fetch per ``min_refresh_interval_s``, failed or not, so a flood of tokens with
    made-up kids, or a gateway outage, costs the gateway at most one request per interval.
    Concurrent lookups share one fetch, which a cancelled caller (a client that hung
    up) does not abort. A fetch is bounded by ``timeout_s`` overall.

    The set is also refetched once it is ``max_age_s`` old, on the next lookup, and each
    successful fetch *replaces* it: a key the gateway stopped publishing (retired, or
    removed because it leaked) is dropped, and ``generation`` moves on so that tokens a
    verifier cached are checked against the new set. While the gateway cannot be reached
    the last set is kept (retrying every ``min_refresh_interval_s``): a gateway outage must
    not stop the mesh, and it retires nothing either.
    """

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient,
        *,
        min_refresh_interval_s: float = 5.0,
        max_age_s: float = 60.0,
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._http = http
        self._min_interval = min_refresh_interval_s
        self._max_age_s = max_age_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._keys: dict[str, OKPKey] = {}
        self._fetched = False  # at least one fetch succeeded
        self._failing = False  # the latest fetch failed
        self._last_attempt = -float("inf")
        self._fetched_at = -float("inf")
        self._attempts = 0
        self._generation = 0
        self._inflight: asyncio.Future[None] | None = None

    @property
    def generation(self) -> int:
        # A stale set counts as a new generation: cached tokens go through ``get``, which refetches.
        if self._clock() - self._fetched_at >= self._max_age_s:
            return -1
        return self._generation

    @property
    def fetches(self) -> int:
        """How many times the JWKS was requested (for metrics and tests)."""
        return self._attempts

    async def get(self, kid: str) -> OKPKey | None:
        key = self._keys.get(kid)
        if key is not None and self._clock() - self._fetched_at < self._max_age_s:
            return key
        await self._refresh()
        key = self._keys.get(kid)
        if key is None and (self._failing or not self._fetched):
            # Not "unknown kid": it may be a freshly rotated key we could not fetch.
            raise KeysUnavailable(self.url)
        return key

    async def _refresh(self) -> None:
        fetch = self._inflight
        if fetch is None:
            if self._clock() - self._last_attempt < self._min_interval:
                return
            self._last_attempt = self._clock()
            self._attempts += 1
            fetch = self._inflight = asyncio.ensure_future(self._fetch())
        await asyncio.shield(fetch)

    async def _fetch(self) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await self._http.get(self.url, timeout=self._timeout_s)
            response.raise_for_status()
            keys = parse_jwks(response.content)
        except (httpx.HTTPError, TimeoutError, ValueError) as exc:
            self._failing = True
            log.warning("cannot fetch the signing keys from %s: %s", self.url, exc or type(exc).__name__)
        else:
            self._keys, self._fetched, self._failing = keys, True, False
            self._fetched_at = self._clock()
            self._generation += 1
        finally:
            self._inflight = None


def parse_jwks(body: bytes) -> dict[str, OKPKey]:
    """The usable signing keys of a JWKS document, by kid; ``ValueError`` if it is not a JWKS.

    Keys this verifier cannot use (other types or curves, encryption keys, malformed
    entries) are skipped rather than failing the set (RFC 7517 §5).
    """
    document: Any = orjson.loads(body)
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK set")
    return signing_keys(_import_each(document["keys"]))


def signing_keys(keys: Iterable[Key]) -> dict[str, OKPKey]:
    """The Ed25519 signing keys among ``keys``, by kid (the first wins on a duplicate kid)."""
    out: dict[str, OKPKey] = {}
    for key in keys:
        if is_signing_key(key):
            out.setdefault(key.kid, key)  # type: ignore[arg-type]
    return out


def _import_each(entries: list[Any]) -> Iterable[Key]:
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") != "OKP":
            continue
        try:
            yield JWKRegistry.import_key(entry)
        except (JoseError, ValueError, TypeError, KeyError):
            continue
