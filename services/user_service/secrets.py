"""Client ids, client secrets and their argon2id hashes.

Secrets are 256-bit random strings shown once and stored only as argon2id hashes
(argon2-cffi's RFC 9106 low-memory profile: 64 MiB, 3 passes, 4 lanes). Hashing
is deliberately slow, so it runs in a worker thread behind a semaphore: the event
loop keeps serving, and a burst of authentications cannot take 64 MiB each at once.
"""

from __future__ import annotations

import asyncio
import secrets

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

    def __init__(self, concurrency: int = 4, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._slots = asyncio.Semaphore(concurrency)
        self._dummy_hash: str | None = None

    async def hash(self, secret: str) -> str:
        """The argon2id hash of ``secret`` (a new random salt every time)."""
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, secret)

    async def verify(self, stored_hash: str, secret: str) -> bool:
        """Whether ``secret`` matches ``stored_hash``.

        argon2 recomputes the hash and compares it in constant time, so the answer's
        timing does not depend on how much of the secret was right.
        """
        async with self._slots:
            return await asyncio.to_thread(self._verify, stored_hash, secret)

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
