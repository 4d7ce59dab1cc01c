"""Scopes, roles and the platform tenant: the vocabulary of authorisation, defined once."""

from __future__ import annotations

MARKET_READ = "market:read"
MARKET_WRITE = "market:write"
TRADE = "trade"
COMPLIANCE = "compliance"
ADMIN = "admin"
#: The client tier's venue link: takes the orders of its tenant's MT5 accounts from the
#: trading engine and reports what the terminal did with them (metatrader-connector).
VENUE = "venue"
#: Service-to-service calls (the gateway asking user-service to authenticate a client).
#: Never granted to a client.
INTERNAL = "internal"

#: Scopes a client may hold.
CLIENT_SCOPES: frozenset[str] = frozenset({MARKET_READ, MARKET_WRITE, TRADE, COMPLIANCE, ADMIN, VENUE})

#: Scopes only an admin of the platform tenant may grant (market data is platform-wide).
PLATFORM_ONLY_SCOPES: frozenset[str] = frozenset({MARKET_WRITE})

#: The platform operator's tenant: its admins manage every tenant.
PLATFORM_TENANT = "platform"

#: Tenant ids are slugs.
TENANT_PATTERN = r"^[a-z][a-z0-9-]{1,31}$"

#: What each role allows.
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "admin": frozenset({ADMIN, MARKET_READ, TRADE, COMPLIANCE}),
    "trader": frozenset({MARKET_READ, TRADE}),
    "compliance-officer": frozenset({MARKET_READ, COMPLIANCE}),
    "viewer": frozenset({MARKET_READ}),
    "data-feed": frozenset({MARKET_WRITE}),
    "venue-link": frozenset({VENUE}),
}


def scopes_of_roles(roles: frozenset[str] | set[str] | list[str]) -> frozenset[str]:
    """The union of the scopes of ``roles`` (unknown roles contribute nothing)."""
    out: set[str] = set()
    for role in roles:
        out |= ROLE_SCOPES.get(role, frozenset())
    return frozenset(out)
