"""The access tokens revoked before their expiry, as every verifier remembers them."""

from __future__ import annotations

import time
from collections.abc import Callable

from shared.auth.principal import Principal

#: How often ``add`` sweeps out entries whose tokens have expired anyway.
PRUNE_INTERVAL_S = 60.0


class RevokedTokens:
    """Revoked token ids (``jti``) and per-client cut-offs, each kept until the tokens it names expire.

    Two kinds of entry: one token (``add``: RFC 7009, a reused refresh token's grant), and every
    token of a client issued before a time (``revoke_client``: the client was disabled, its
    secret rotated, or an admin revoked its tokens). Membership is a dict lookup or two (it
    runs on every request). Entries past their expiry are swept out at most once a minute: a
    lingering one is harmless, because the verifier refuses an expired token before it asks.

    ``complete`` is False for a set that must first be filled from the durable record
    (``shared.auth.feed.RevocationListLoader``): the topic alone may have lost revocations
    (a broker restarted empty), so until then a verifier refuses every token rather than
    accept a revoked one.
    """

    def __init__(self, *, complete: bool = True, clock: Callable[[], float] = time.time) -> None:
        self._until: dict[str, int] = {}
        #: client_id -> (issued_before, until)
        self._clients: dict[str, tuple[int, int]] = {}
        self._clock = clock
        self._next_prune = clock() + PRUNE_INTERVAL_S
        self.complete = complete

    def add(self, token_id: str, expires_at: int) -> None:
        """Refuse ``token_id`` until ``expires_at`` (epoch seconds); a dead token is not stored."""
        now = self._clock()
        if expires_at > now:
            self._until[token_id] = max(expires_at, self._until.get(token_id, 0))
        self._maybe_prune(now)

    def revoke_client(self, client_id: str, issued_before: int, until: int) -> None:
        """Refuse every token of ``client_id`` issued before ``issued_before`` (epoch s), until ``until``.

        A later cut-off for the same client replaces an earlier one (it covers every token the
        earlier one did); an older one arriving late changes nothing.
        """
        now = self._clock()
        if until > now:
            before, kept_until = self._clients.get(client_id, (0, 0))
            self._clients[client_id] = (max(before, issued_before), max(kept_until, until))
        self._maybe_prune(now)

    def refuses(self, principal: Principal) -> bool:
        """Whether ``principal``'s token was revoked, by its id or by a cut-off of its client."""
        if principal.token_id in self._until:
            return True
        cutoff = self._clients.get(principal.client_id)
        return cutoff is not None and principal.issued_at < cutoff[0]

    def _maybe_prune(self, now: float) -> None:
        if now >= self._next_prune:
            self.prune(now)

    def prune(self, now: float | None = None) -> int:
        """Forget the entries whose tokens have expired; returns how many were dropped."""
        now = self._clock() if now is None else now
        self._next_prune = now + PRUNE_INTERVAL_S
        dead = [token_id for token_id, until in self._until.items() if until <= now]
        for token_id in dead:
            del self._until[token_id]
        dead_clients = [client_id for client_id, (_, until) in self._clients.items() if until <= now]
        for client_id in dead_clients:
            del self._clients[client_id]
        return len(dead) + len(dead_clients)

    def __contains__(self, token_id: object) -> bool:
        return token_id in self._until

    def __len__(self) -> int:
        return len(self._until) + len(self._clients)
