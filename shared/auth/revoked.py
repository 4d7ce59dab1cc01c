"""The access tokens revoked before their expiry, as every verifier remembers them."""

from __future__ import annotations

import time
from collections.abc import Callable

#: How often ``add`` sweeps out entries whose tokens have expired anyway.
PRUNE_INTERVAL_S = 60.0


class RevokedTokens:
    """Revoked token ids (``jti``), each kept until its token would have expired.

    Membership is a bare dict lookup (it runs on every request). Entries past their
    expiry are swept out by ``add`` at most once a minute: a lingering one is harmless,
    because the verifier refuses an expired token before it asks this set.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._until: dict[str, int] = {}
        self._clock = clock
        self._next_prune = clock() + PRUNE_INTERVAL_S

    def add(self, token_id: str, expires_at: int) -> None:
        """Refuse ``token_id`` until ``expires_at`` (epoch seconds); a dead token is not stored."""
        now = self._clock()
        if expires_at > now:
            self._until[token_id] = max(expires_at, self._until.get(token_id, 0))
        if now >= self._next_prune:
            self.prune(now)

    def prune(self, now: float | None = None) -> int:
        """Forget the ids whose tokens have expired; returns how many were dropped."""
        now = self._clock() if now is None else now
        self._next_prune = now + PRUNE_INTERVAL_S
        dead = [token_id for token_id, until in self._until.items() if until <= now]
        for token_id in dead:
            del self._until[token_id]
        return len(dead)

    def __contains__(self, token_id: object) -> bool:
        return token_id in self._until

    def __len__(self) -> int:
        return len(self._until)
