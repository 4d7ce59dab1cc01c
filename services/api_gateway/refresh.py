"""Refresh tokens in PostgreSQL (schema ``gateway``): families, rotation, replay detection.

A refresh token is ``secrets.token_urlsafe(32)`` (256 bits) handed to the client once;
only its SHA-256 is stored. Tokens of one original grant form a *family*. Each use
rotates: under ``SELECT ... FOR UPDATE`` the presented token is marked used and its
successor inserted in the same transaction, so of two concurrent uses exactly one
finds it unused. Presenting a used token is taken as a replay (RFC 9700 §4.14.2):
the whole family is revoked, together with the access tokens it produced, and the
caller publishes those revocations.

Concurrent duplicates from a legitimate client look exactly like a replay and are
treated as one: the loser gets ``invalid_grant`` and the family ends. A client must
serialise its refreshes; the security of rotation depends on not guessing otherwise.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from services.api_gateway.errors import invalid_grant, invalid_scope

#: Mints an access token for a scope, returning ``(token, claims)``; called inside the transaction.
MintAccess = Callable[[frozenset[str]], tuple[str, dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class RevokedAccess:
    """An access token a family revocation killed: publish it so every verifier refuses it."""

    jti: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class Rotated:
    """A successful refresh: the new access token (and its claims) and the new refresh token."""

    access_token: str
    claims: dict[str, Any]
    refresh_token: str
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class Replayed:
    """A used refresh token was presented again: its family is now revoked."""

    revoked: list[RevokedAccess]


@dataclass(frozen=True, slots=True)
class RefreshInfo:
    """What introspection reports about a refresh token."""

    active: bool
    client_id: str
    tenant: str
    subject: str
    scopes: frozenset[str]
    issued_at: int
    expires_at: int


class NotYourToken(Exception):
    """The token exists but was issued to another client."""


def token_hash(token: str) -> str:
    """What is stored of a refresh token: SHA-256, hex (the token itself has 256 random bits)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_refresh_token() -> str:
    """A new opaque refresh token: 256 random bits, base64url."""
    return secrets.token_urlsafe(32)


class RefreshTokenStore:
    """The ``gateway`` schema's families, refresh tokens and revoked access-token ids."""

    def __init__(self, pool: asyncpg.Pool, *, ttl_s: int, clock: Callable[[], float] = time.time) -> None:
        self._pool = pool
        self._ttl = timedelta(seconds=ttl_s)
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def start_family(
        self,
        *,
        client_id: str,
        tenant: str,
        subject: str,
        scopes: frozenset[str],
        access_jti: str,
        access_expires_at: int,
    ) -> str:
        """Open a family for a new grant, with its first refresh token and first access token; returns the token."""
        token, family_id, now = new_refresh_token(), uuid.uuid4(), self._now()
        scope = _scope_text(scopes)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO gateway.refresh_families (family_id, client_id, tenant, subject, scope, created_at)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                family_id,
                client_id,
                tenant,
                subject,
                scope,
                now,
            )
            await self._insert_token(conn, token, family_id, client_id, tenant, scope, now)
            await self._insert_access(conn, family_id, access_jti, access_expires_at)
        return token

    async def rotate(
        self,
        token: str,
        *,
        client_id: str,
        tenant: str,
        requested: frozenset[str] | None,
        allowed: frozenset[str],
        mint: MintAccess,
    ) -> Rotated | Replayed:
        """Use ``token`` once: a new access token and a new refresh token in the same family.

        ``requested``: the ``scope`` parameter, if any (must be within the token's scope; it
        narrows the access token, the new refresh token keeps the full scope, RFC 6749 §6);
        ``allowed``: the client's current scopes (a scope taken from the client since the
        grant is not issued again). Raises ``OAuthError`` (``invalid_grant``/``invalid_scope``)
        for a token that is unknown, another client's, expired or revoked.
        """
        now, digest = self._now(), token_hash(token)
        async with self._pool.acquire() as conn, conn.transaction():
            # Lock the family first, then the token, the same order as a revocation takes:
            # every change to a family is serialised, and two lockers never deadlock.
            family_id = await conn.fetchval(
                "SELECT family_id FROM gateway.refresh_tokens WHERE token_hash = $1", digest
            )
            family = (
                None
                if family_id is None
                else await conn.fetchrow(
                    "SELECT client_id, tenant, revoked_at FROM gateway.refresh_families"
                    " WHERE family_id = $1 FOR UPDATE",
                    family_id,
                )
            )
            row = (
                None
                if family is None
                else await conn.fetchrow(
                    "SELECT scope, expires_at, used_at, revoked_at FROM gateway.refresh_tokens"
                    " WHERE token_hash = $1 FOR UPDATE",
                    digest,
                )
            )
            if row is None or family is None or family["client_id"] != client_id or family["tenant"] != tenant:
                # Another client's token gets the same answer as an unknown one (RFC 6749 §5.2).
                raise invalid_grant("unknown refresh token")
            if row["revoked_at"] is not None or family["revoked_at"] is not None:
                raise invalid_grant("refresh token revoked")
            if row["used_at"] is not None:
                return Replayed(await self._revoke_family(conn, family_id, now, "refresh_token_reuse"))
            if row["expires_at"] <= now:
                raise invalid_grant("refresh token expired")
            granted = frozenset(row["scope"].split())
            if requested is not None and not requested <= granted:
                raise invalid_scope("the requested scope exceeds the scope of the refresh token")
            scopes = (requested if requested is not None else granted) & allowed
            if not scopes:
                raise invalid_scope("none of the requested scopes is held by the client any more")
            await conn.execute("UPDATE gateway.refresh_tokens SET used_at = $2 WHERE token_hash = $1", digest, now)
            access_token, claims = mint(scopes)
            successor = new_refresh_token()
            # RFC 6749 §6: the new refresh token's scope is identical to the old one's; only
            # the access token is narrowed, so a later refresh may ask for the full scope again.
            await self._insert_token(conn, successor, family_id, client_id, tenant, row["scope"], now)
            await self._insert_access(conn, family_id, claims["jti"], claims["exp"])
        return Rotated(access_token, claims, successor, scopes)

    async def revoke_family_of(self, token: str, *, client_id: str, reason: str) -> list[RevokedAccess] | None:
        """Revoke the family of ``token`` (RFC 7009 for a refresh token); ``None`` if the token is unknown.

        Raises ``NotYourToken`` if it belongs to another client. Returns the access tokens to publish.
        """
        now = self._now()
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT f.family_id, f.client_id FROM gateway.refresh_tokens t"
                "  JOIN gateway.refresh_families f USING (family_id) WHERE t.token_hash = $1"
                "  FOR UPDATE OF f",
                token_hash(token),
            )
            if row is None:
                return None
            if row["client_id"] != client_id:
                raise NotYourToken
            return await self._revoke_family(conn, row["family_id"], now, reason)

    async def describe(self, token: str) -> RefreshInfo | None:
        """The refresh token's state for introspection; ``None`` if unknown."""
        row = await self._pool.fetchrow(
            "SELECT t.scope, t.issued_at, t.expires_at, t.used_at, t.revoked_at, f.client_id, f.tenant, f.subject,"
            "       f.revoked_at AS family_revoked_at"
            "  FROM gateway.refresh_tokens t JOIN gateway.refresh_families f USING (family_id)"
            " WHERE t.token_hash = $1",
            token_hash(token),
        )
        if row is None:
            return None
        active = (
            row["used_at"] is None
            and row["revoked_at"] is None
            and row["family_revoked_at"] is None
            and row["expires_at"] > self._now()
        )
        return RefreshInfo(
            active=active,
            client_id=row["client_id"],
            tenant=row["tenant"],
            subject=row["subject"],
            scopes=frozenset(row["scope"].split()),
            issued_at=int(row["issued_at"].timestamp()),
            expires_at=int(row["expires_at"].timestamp()),
        )

    async def record_revoked_access(self, jti: str, *, client_id: str, expires_at: int, reason: str) -> None:
        """Remember a revoked access token (RFC 7009) until it expires."""
        await self._pool.execute(
            "INSERT INTO gateway.revoked_access_tokens (jti, client_id, expires_at, reason) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (jti) DO NOTHING",
            jti,
            client_id,
            _at(expires_at),
            reason,
        )

    async def is_access_revoked(self, jti: str) -> bool:
        """Whether any gateway process revoked this access token (directly or with its family)."""
        return await self._pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM gateway.revoked_access_tokens WHERE jti = $1)", jti
        )

    async def purge(self, *, grace_s: int = 86_400) -> int:
        """Delete what can no longer matter: rows of tokens expired more than ``grace_s`` ago."""
        cutoff = self._now() - timedelta(seconds=grace_s)
        async with self._pool.acquire() as conn, conn.transaction():
            removed = 0
            for sql in (
                "DELETE FROM gateway.revoked_access_tokens WHERE expires_at < $1",
                "DELETE FROM gateway.family_access_tokens WHERE expires_at < $1",
                "DELETE FROM gateway.refresh_tokens WHERE expires_at < $1",
                "DELETE FROM gateway.refresh_families f WHERE f.created_at < $1 AND NOT EXISTS"
                " (SELECT 1 FROM gateway.refresh_tokens t WHERE t.family_id = f.family_id)",
            ):
                removed += int((await conn.execute(sql, cutoff)).rsplit(" ", 1)[-1])
            return removed

    # --- internals ---------------------------------------------------------------------

    async def _revoke_family(
        self, conn: asyncpg.Connection, family_id: uuid.UUID, now: datetime, reason: str
    ) -> list[RevokedAccess]:
        await conn.execute(
            "UPDATE gateway.refresh_families SET revoked_at = $2, revoked_reason = $3"
            " WHERE family_id = $1 AND revoked_at IS NULL",
            family_id,
            now,
            reason,
        )
        await conn.execute(
            "UPDATE gateway.refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
            family_id,
            now,
        )
        await conn.execute(
            "INSERT INTO gateway.revoked_access_tokens (jti, client_id, expires_at, revoked_at, reason)"
            " SELECT a.jti, f.client_id, a.expires_at, $2, $3"
            "   FROM gateway.family_access_tokens a JOIN gateway.refresh_families f USING (family_id)"
            "  WHERE a.family_id = $1 AND a.expires_at > $2"
            " ON CONFLICT (jti) DO NOTHING",
            family_id,
            now,
            reason,
        )
        # Every live one, not only those revoked just now: a revocation repeated because the
        # bus failed the first time must publish them again (the events are idempotent).
        rows = await conn.fetch(
            "SELECT jti, expires_at FROM gateway.family_access_tokens WHERE family_id = $1 AND expires_at > $2",
            family_id,
            now,
        )
        return [RevokedAccess(r["jti"], int(r["expires_at"].timestamp())) for r in rows]

    async def _insert_token(
        self,
        conn: asyncpg.Connection,
        token: str,
        family_id: uuid.UUID,
        client_id: str,
        tenant: str,
        scope: str,
        now: datetime,
    ) -> None:
        await conn.execute(
            "INSERT INTO gateway.refresh_tokens"
            " (token_hash, family_id, client_id, tenant, scope, issued_at, expires_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            token_hash(token),
            family_id,
            client_id,
            tenant,
            scope,
            now,
            now + self._ttl,
        )

    async def _insert_access(self, conn: asyncpg.Connection, family_id: uuid.UUID, jti: str, expires_at: int) -> None:
        await conn.execute(
            "INSERT INTO gateway.family_access_tokens (jti, family_id, expires_at) VALUES ($1, $2, $3)",
            jti,
            family_id,
            _at(expires_at),
        )


def _scope_text(scopes: frozenset[str]) -> str:
    return " ".join(sorted(scopes))


def _at(epoch_s: int) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)
