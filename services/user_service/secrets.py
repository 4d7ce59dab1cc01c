"""Client ids, client secrets and their argon2id hashes.

Secrets are 256-bit random strings shown once and stored only as argon2id hashes
(argon2-cffi's RFC 9106 low-memory profile: 64 MiB, 3 passes, 4 lanes). Hashing
is deliberately slow, so it runs in a worker thread behind a semaphore: the event
loop keeps serving, and a burst of authentications cannot take 64 MiB each at once.

A successful verification is remembered for a few minutes, as a keyed hash (HMAC
with a per-process random key) of the stored hash and the secret: a client asking
for its next token within that time skips argon2 (measured: ~10 tokens/s with every
request paying for argon2). Only matches are remembered, so a wrong secret always
costs a full verify; a rotated secret has a new stored hash, so it never matches.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

#: Every hash this service writes starts with this (checked by the schema too).
HASH_PREFIX = "$argon2id$"


def new_secret() -> str:
    """A fresh client secret: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def new_client_id() -> str:
    """A fresh client id: ``hc_`` and 12 random bytes (not secret, but not guessable either)."""
    return "hc_" + secrets.token_urlsafe(12)


class SecretHasher:
    """Hashes and verifies client secrets off the event loop, at most ``concurrency`` at a time."""

    def __init__(
        self,
        concurrency: int = 4,
        hasher: PasswordHasher | None = None,
        *,
        remember_s: float = 300.0,
        remember_max: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hasher = hasher or PasswordHasher()
        self._slots = asyncio.Semaphore(concurrency)
        self._dummy_hash: str | None = None
        self._remember_s, self._remember_max, self._clock = remember_s, remember_max, clock
        self._proof_key = secrets.token_bytes(32)
        self._verified: OrderedDict[bytes, float] = OrderedDict()  # proof -> valid until

    async def hash(self, secret: str) -> str:
        """The argon2id hash of ``secret`` (a new random salt every time)."""
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, secret)

    async def verify(self, stored_hash: str, secret: str) -> bool:
        """Whether ``secret`` matches ``stored_hash``.

        argon2 recomputes the hash and compares it in constant time, so the answer's
        timing does not depend on how much of the secret was right. A match verified
        within ``remember_s`` is answered from memory.
        """
        proof = hmac.new(self._proof_key, stored_hash.encode() + b"\0" + secret.encode(), hashlib.sha256).digest()
        until = self._verified.get(proof)
        if until is not None and self._clock() < until:
            return True
        async with self._slots:
            matches = await asyncio.to_thread(self._verify, stored_hash, secret)
        if matches and self._remember_s > 0:
            self._verified[proof] = self._clock() + self._remember_s
            self._verified.move_to_end(proof)
            while len(self._verified) > self._remember_max:
                self._verified.popitem(last=False)
        return matches

    async def verify_nothing(self, secret: str) -> None:
        """Spend one verify's time on a hash nobody owns.

        Called when the client id is unknown, so an unknown id and a wrong secret take
        equally long and the timing does not tell which client ids exist.
        """
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(new_secret())
        await self.verify(self._dummy_hash, secret)

    def needs_rehash(self, stored_hash: str) -> bool:
        """True if ``stored_hash`` was made with other parameters than the current ones."""
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True

    def _verify(self, stored_hash: str, secret: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, secret)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def warm_up(self) -> None:
        """Compute the dummy hash now rather than on the first unknown client id."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(new_secret())
