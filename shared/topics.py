"""Topic names, defined once. Dotted and versioned: a new event version gets a new topic."""

from __future__ import annotations

MARKET_TICKS = "market.ticks.v1"
MARKET_BARS = "market.bars.v1"
#: Access tokens revoked before their expiry (every verifier keeps the ids until then).
AUTH_REVOCATIONS = "auth.revocations.v1"
#: Every token of a client issued before a time revoked at once (disabled, rotated, or on request).
AUTH_CLIENT_REVOCATIONS = "auth.client-revocations.v1"
#: Every change to tenants, users, roles and OAuth2 clients (for the audit trail).
DIRECTORY_CHANGES = "users.directory.v1"
#: Messages a consumer could not decode or process, with the reason in the headers.
DEAD_LETTERS = "system.deadletters.v1"

#: Partition counts used when the project creates the topics itself. Market topics
#: are keyed by symbol, so the partition count bounds how far a consumer group scales out.
PARTITIONS: dict[str, int] = {
    MARKET_TICKS: 6,
    MARKET_BARS: 6,
    AUTH_REVOCATIONS: 1,
    AUTH_CLIENT_REVOCATIONS: 1,
    DIRECTORY_CHANGES: 3,
    DEAD_LETTERS: 1,
}
