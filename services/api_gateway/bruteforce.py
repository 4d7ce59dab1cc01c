"""Lockout after repeated failed client authentications, per (client_id, address) and per address.

Failures are counted with ``shared.ratelimit.SlidingWindowLimiter`` (one limiter, two
"endpoints": ``client`` for a client_id *from one address*, and ``ip``). The limiter admits
N-1 failures per window; the N-th is the one it refuses, and that starts a lockout: for
``lockout_s`` that client_id from that address (or the whole address) is answered 429
without asking user-service, so an attacker cannot use the gateway as an oracle for
secrets, and user-service's argon2 hashing cannot be driven into the ground through it.

There is deliberately no lockout of a client_id from everywhere: client ids are not
secret, so such a lock would let anyone shut any client out (the bootstrap admin and
the collector included) with a few bad attempts. What it would have added is a bound on
guessing one client's secret from many addresses at once (credential stuffing); every
secret here is 256 random bits, so that guessing is hopeless at any rate, and each
address is still held to its own limits.

Successes do not clear failures: a legitimate client authenticating every minute
would otherwise reset the count for someone guessing its secret in between.

Per process: several gateway processes each count on their own, so the effective
limit is N times the process count (still a hard bound on the guessing rate).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from shared.ratelimit import Limit, SlidingWindowLimiter

_CLIENT, _IP = "client", "ip"
#: Lockout entries kept at most; beyond it the oldest lockouts are dropped (memory bound under a spray).
_MAX_LOCKOUTS = 100_000


class AuthFailureGuard:
    """Counts failed client authentications and tells how long a client_id from an address, or an
    address, is locked out. ``per_client``: failures of one client_id from one address."""

    def __init__(
        self,
        *,
        per_client: int,
        per_ip: int,
        window_s: float,
        lockout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_client < 1 or per_ip < 1:
            raise ValueError("the limits must allow at least one failure")
        self._clock = clock
        self._lockout_s = lockout_s
        # The limiter refuses the failure *after* its capacity: capacity N-1 makes the N-th
        # failure the refused one. A limit of 1 locks on the first failure, no limiter needed.
        limits = {name: Limit(n - 1, window_s) for name, n in ((_CLIENT, per_client), (_IP, per_ip)) if n > 1}
        self._immediate = {name for name, n in ((_CLIENT, per_client), (_IP, per_ip)) if n == 1}
        # safety_margin=1: these are our own limits, not a remote API's to stay under.
        self._failures = SlidingWindowLimiter(limits, safety_margin=1.0, clock=clock) if limits else None
        self._locked_until: dict[str, float] = {}

    def retry_after(self, client_id: str | None, ip: str | None) -> int:
        """Whole seconds until ``client_id`` may try again from ``ip``; 0 if neither it nor ``ip`` is locked out."""
        now = self._clock()
        wait = 0.0
        for key in _keys(client_id, ip):
            until = self._locked_until.get(key)
            if until is None:
                continue
            if until <= now:
                del self._locked_until[key]
            else:
                wait = max(wait, until - now)
        return math.ceil(wait)

    def record_failure(self, client_id: str | None, ip: str | None) -> None:
        """Count one failed authentication of ``client_id`` from ``ip``; lock out the pair or the address
        if over its limit."""
        now = self._clock()
        for key in _keys(client_id, ip):
            kind = key.split(":", 1)[0]
            if kind in self._immediate or (self._failures is not None and self._failures.acquire(key, kind) > 0):
                self._lock(key, now)

    def _lock(self, key: str, now: float) -> None:
        self._locked_until.pop(key, None)
        self._locked_until[key] = now + self._lockout_s
        if len(self._locked_until) > _MAX_LOCKOUTS:
            # Dicts keep insertion order and re-locks are re-inserted: the first is the oldest.
            del self._locked_until[next(iter(self._locked_until))]


def _keys(client_id: str | None, ip: str | None) -> list[str]:
    out = []
    if client_id:
        # The address is part of the key: failures from one address never lock the client out of another.
        out.append(f"{_CLIENT}:{ip or ''} {client_id}")
    if ip:
        out.append(f"{_IP}:{ip}")
    return out
