"""The gateway's durable record of revocations (PostgreSQL schema ``gateway``).

``revoked_access_tokens`` doubles as the outbox of ``TokenRevoked``: a row is written before
anything is published (in the same transaction as a refresh-token family's revocation),
``published_at`` is set once the bus acknowledged its event, and a sweep publishes the rows
still unacknowledged, so a revocation made while Kafka is down reaches every verifier once it
is back. ``client_revocations`` keeps the per-client cut-offs user-service announces. Both
are what ``GET /oauth2/revocations`` serves: the list every verifier rebuilds its revoked set
from, at start and periodically.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg

from services.api_gateway.refresh import RevokedAccess
from shared.auth.feed import RevocationList, RevokedClient, RevokedToken
from shared.events import ClientTokensRevoked


def _at(epoch_s: int | float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def _epoch(at: datetime) -> int:
    return int(at.timestamp())


class RevocationLedger:
    """Reads and writes the durable revocations; every method is one short statement."""

    def __init__(self, pool: asyncpg.Pool, *, clock: Callable[[], float] = time.time) -> None:
        self._pool = pool
        self._clock = clock

    async def mark_published(self, jtis: Sequence[str]) -> None:
        """The bus acknowledged the ``TokenRevoked`` of ``jtis``: the sweep may leave them."""
        if jtis:
            await self._pool.execute(
                "UPDATE gateway.revoked_access_tokens SET published_at = $2"
                " WHERE jti = ANY($1::text[]) AND published_at IS NULL",
                list(jtis),
                _at(self._clock()),
            )

    async def unpublished(self, *, older_than_s: float, limit: int = 1000) -> dict[str, list[RevokedAccess]]:
        """Live revocations not yet acknowledged by the bus, by reason, recorded more than ``older_than_s``
        ago (younger ones are still being published by the request that recorded them)."""
        now = self._clock()
        rows = await self._pool.fetch(
            "SELECT jti, expires_at, reason FROM gateway.revoked_access_tokens"
            " WHERE published_at IS NULL AND expires_at > $1 AND revoked_at < $2"
            " ORDER BY revoked_at LIMIT $3",
            _at(now),
            _at(now - older_than_s),
            limit,
        )
        by_reason: dict[str, list[RevokedAccess]] = {}
        for r in rows:
            by_reason.setdefault(r["reason"], []).append(RevokedAccess(r["jti"], _epoch(r["expires_at"])))
        return by_reason

    async def record_client(self, event: ClientTokensRevoked) -> None:
        """Keep a client's cut-off (idempotent; a later cut-off wins, an older one changes nothing)."""
        await self._pool.execute(
            "INSERT INTO gateway.client_revocations (client_id, tenant, issued_before, expires_at, reason)"
            " VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (client_id) DO UPDATE SET"
            "   issued_before = GREATEST(client_revocations.issued_before, EXCLUDED.issued_before),"
            "   expires_at = GREATEST(client_revocations.expires_at, EXCLUDED.expires_at),"
            "   reason = CASE WHEN EXCLUDED.issued_before > client_revocations.issued_before"
            "                 THEN EXCLUDED.reason ELSE client_revocations.reason END",
            event.client_id,
            event.tenant,
            _at(event.issued_before),
            _at(event.expires_at),
            event.reason,
        )

    async def live(self) -> RevocationList:
        """Every revocation whose tokens may still be alive: what a verifier must refuse."""
        now = _at(self._clock())
        async with self._pool.acquire() as conn:
            tokens = await conn.fetch(
                "SELECT jti, expires_at FROM gateway.revoked_access_tokens WHERE expires_at > $1", now
            )
            clients = await conn.fetch(
                "SELECT client_id, issued_before, expires_at FROM gateway.client_revocations WHERE expires_at > $1",
                now,
            )
        return RevocationList(
            tokens=[RevokedToken(jti=r["jti"], expires_at=_epoch(r["expires_at"])) for r in tokens],
            clients=[
                RevokedClient(
                    client_id=r["client_id"],
                    issued_before=_epoch(r["issued_before"]),
                    expires_at=_epoch(r["expires_at"]),
                )
                for r in clients
            ],
        )

    async def purge(self, *, grace_s: int = 86_400) -> int:
        """Delete client cut-offs whose tokens expired more than ``grace_s`` ago."""
        cutoff = _at(self._clock()) - timedelta(seconds=grace_s)
        status = await self._pool.execute("DELETE FROM gateway.client_revocations WHERE expires_at < $1", cutoff)
        return int(status.rsplit(" ", 1)[-1])
