"""Who may act in which tenant, and who may grant what: the rules, as pure functions.

* A tenant admin acts only in its own tenant. Anything of another tenant is answered
  as if it did not exist (404, never 403), so ids cannot be probed across tenants.
* A platform admin (admin of the ``platform`` tenant) may act in any tenant.
* A grant (client scopes, or the scopes a user's roles carry) must stay within
  ``CLIENT_SCOPES``; ``PLATFORM_ONLY_SCOPES`` only by a platform admin; and a tenant
  admin grants no scope its own token does not hold (no escalation by delegation).
  The platform admin is the root of all grants: it may grant any client scope (the
  bootstrap admin registers the ``market:write`` feed without holding that scope).
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.auth.scopes import CLIENT_SCOPES, PLATFORM_ONLY_SCOPES, PLATFORM_TENANT
from shared.kit.problems import Problem

GRANT_TYPES: frozenset[str] = frozenset({"client_credentials", "refresh_token"})
DEFAULT_GRANT_TYPES: tuple[str, ...] = ("client_credentials",)


class Caller:
    """What the rules need to know about the principal: its tenant and scopes.

    Kept apart from ``shared.auth.Principal`` so the rules (and the bootstrap, which has
    no token) do not depend on how a request was authenticated.
    """

    __slots__ = ("scopes", "subject", "tenant")

    def __init__(self, subject: str, tenant: str, scopes: Iterable[str]) -> None:
        self.subject = subject
        self.tenant = tenant
        self.scopes = frozenset(scopes)

    @property
    def is_platform_admin(self) -> bool:
        return self.tenant == PLATFORM_TENANT and "admin" in self.scopes

    @classmethod
    def of(cls, principal) -> Caller:
        """From a ``shared.auth.Principal``."""
        return cls(principal.subject, principal.tenant, principal.scopes)


def not_found(kind: str) -> Problem:
    return Problem(404, f"{kind} not found")


def target_tenant(caller: Caller, requested: str | None) -> str:
    """The tenant a call acts in: the caller's own unless a platform admin names another.

    A tenant admin naming another tenant gets the same 404 as for a tenant that does
    not exist, so tenant ids cannot be probed.
    """
    if requested is None or requested == caller.tenant:
        return caller.tenant
    if caller.is_platform_admin:
        return requested
    raise not_found("tenant")


def check_grant(caller: Caller, scopes: Iterable[str]) -> None:
    """Refuse a grant of ``scopes`` the caller may not give (422 unknown, 403 not allowed)."""
    wanted = frozenset(scopes)
    unknown = sorted(wanted - CLIENT_SCOPES)
    if unknown:
        raise Problem(422, f"scopes: not grantable: {', '.join(unknown)}")
    platform_only = sorted(wanted & PLATFORM_ONLY_SCOPES)
    if platform_only and not caller.is_platform_admin:
        raise Problem(403, f"only a platform admin may grant {', '.join(platform_only)}")
    beyond = sorted(wanted - caller.scopes)
    if beyond and not caller.is_platform_admin:
        raise Problem(403, f"cannot grant scopes the caller does not hold: {', '.join(beyond)}")


def check_grant_types(grant_types: Iterable[str]) -> None:
    unknown = sorted(frozenset(grant_types) - GRANT_TYPES)
    if unknown:
        raise Problem(422, f"grant_types: unsupported: {', '.join(unknown)}")
