"""What a verified access token says about its caller, and the error a refused token raises."""

from __future__ import annotations

from dataclasses import dataclass

from shared.auth.scopes import ADMIN, PLATFORM_TENANT


class InvalidToken(Exception):
    """The bearer token is refused.

    ``description`` is short, human and safe to send back in ``error_description``:
    it names what is wrong (expired, wrong audience…) and never echoes the token.
    """

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class VerifierNotReady(InvalidToken):
    """The verifier cannot judge any token yet (its revocation list is not loaded): the caller's
    token may be fine, so this is the service's 503, not the token's 401."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller behind a verified access token."""

    subject: str
    client_id: str
    tenant: str
    scopes: frozenset[str]
    token_id: str
    #: Epoch seconds (the token's ``exp``).
    expires_at: int
    #: Epoch seconds (the token's ``iat``): a client's revocation cut-off refuses tokens issued before it.
    #: 0 when unknown, which any cut-off refuses.
    issued_at: int = 0

    def has(self, scope: str) -> bool:
        """Whether the token grants ``scope``."""
        return scope in self.scopes

    @property
    def is_platform_admin(self) -> bool:
        """An admin of the platform operator's tenant: may manage every tenant."""
        return self.tenant == PLATFORM_TENANT and ADMIN in self.scopes
