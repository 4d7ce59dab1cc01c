"""Access-token revocation: recorded in PostgreSQL, remembered locally, published to every verifier.

Three places, three jobs: ``gateway.revoked_access_tokens`` is the durable record every
gateway process consults for introspection, and the outbox of the events; the local
``RevokedTokens`` makes this process refuse the token at once; ``TokenRevoked`` on
``auth.revocations.v1`` tells every other verifier (each keeps the id until the token
expires). The record comes first: a revocation the bus did not acknowledge (Kafka down)
stays unpublished in PostgreSQL and :meth:`Revocations.run_sweeps` publishes it later.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence

from services.api_gateway.refresh import RefreshTokenStore, RevokedAccess
from services.api_gateway.revocation_ledger import RevocationLedger
from shared.auth import RevokedTokens
from shared.bus.publish import BulkPublisher
from shared.events import EVENT_NAMESPACE, TokenRevoked, now_ns

log = logging.getLogger(__name__)


class RevocationNotPublished(Exception):
    """The bus did not acknowledge a revocation in time (it is recorded; publishing again is safe)."""


class Revocations:
    """Revokes access tokens and announces it."""

    def __init__(
        self,
        store: RefreshTokenStore,
        ledger: RevocationLedger,
        revoked: RevokedTokens,
        publisher: BulkPublisher,
        *,
        publish_timeout_s: float = 5.0,
    ) -> None:
        self._store = store
        self.ledger = ledger
        self.revoked = revoked
        self._publisher = publisher
        self._timeout_s = publish_timeout_s

    async def revoke_access(self, jti: str, *, client_id: str, expires_at: int, reason: str) -> None:
        """Revoke one access token (RFC 7009); ``RevocationNotPublished`` if the bus did not take it."""
        await self._store.record_revoked_access(jti, client_id=client_id, expires_at=expires_at, reason=reason)
        await self.announce([RevokedAccess(jti, expires_at)], reason=reason)

    async def announce(self, tokens: Sequence[RevokedAccess], *, reason: str) -> None:
        """Remember ``tokens`` locally and publish one ``TokenRevoked`` each (already recorded in PostgreSQL).

        ``RevocationNotPublished`` if the bus did not acknowledge them; they stay unpublished in
        PostgreSQL and the sweep publishes them again.
        """
        if not tokens:
            return
        now = int(time.time())
        for token in tokens:
            self.revoked.add(token.jti, token.expires_at)
        ts = now_ns()
        # The event id is derived from the jti: a revocation published twice (a retry) is
        # recognisably the same event downstream.
        events = [
            TokenRevoked(
                event_id=uuid.uuid5(EVENT_NAMESPACE, f"token_revoked|{t.jti}"),
                ts_event=ts,
                ts_init=ts,
                token_id=t.jti,
                expires_at=t.expires_at,
                reason=reason[:64],
            )
            for t in tokens
            if t.expires_at > now
        ]
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._publisher.publish(events)
        except Exception as exc:
            log.error(
                "could not publish %d token revocation(s), the sweep will retry: %s",
                len(events),
                exc or type(exc).__name__,
            )
            raise RevocationNotPublished(str(exc)) from exc
        await self.ledger.mark_published([t.jti for t in tokens])

    async def sweep(self, *, older_than_s: float) -> int:
        """Publish the recorded revocations the bus has not acknowledged yet; returns how many."""
        pending = await self.ledger.unpublished(older_than_s=older_than_s)
        for reason, tokens in pending.items():
            await self.announce(tokens, reason=reason)
        count = sum(len(tokens) for tokens in pending.values())
        if count:
            log.info("published %d token revocation(s) left over while the bus was unavailable", count)
        return count

    async def run_sweeps(self, interval_s: float) -> None:
        """Sweep every ``interval_s`` forever (cancel to stop); a failed round is retried next time."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.sweep(older_than_s=interval_s)
            except Exception as exc:  # the bus or the database is away: next round
                log.warning("revocation sweep failed; retrying in %.1f s: %s", interval_s, exc or type(exc).__name__)

    async def is_revoked(self, jti: str) -> bool:
        """Whether the token was revoked here or by any other gateway process."""
        return jti in self.revoked or await self._store.is_access_revoked(jti)
