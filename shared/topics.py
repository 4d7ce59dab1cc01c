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
#: The broker epoch: one record at the log's start naming the log's incarnation (``shared.bus.epoch``).
BROKER_EPOCH = "hats.epoch.v1"

#: Partition counts used when the project creates the topics itself. Market topics
#: are keyed by symbol, so the partition count bounds how far a consumer group scales out.
PARTITIONS: dict[str, int] = {
    MARKET_TICKS: 6,
    MARKET_BARS: 6,
    AUTH_REVOCATIONS: 1,
    AUTH_CLIENT_REVOCATIONS: 1,
    DIRECTORY_CHANGES: 3,
    DEAD_LETTERS: 1,
    BROKER_EPOCH: 1,
}


_HOUR_MS = 3_600_000
#: How long a broker keeps each topic's messages (``retention.ms``, deletion by time), set
#: when the project creates the topic. The bus is a conveyor, not the store: ticks and bars
#: are kept in ClickHouse, but a consumer (database-service, the bar stage) down for longer
#: than this would resume at the earliest record left (``auto_offset_reset``) and skip what
#: was deleted, so it is a week (Kafka's default), which outlasts a long weekend; a
#: revocation must outlive every token it revokes (access tokens live 15 min by default);
#: dead letters wait for a human. The embedded Tansu (memory storage) records these but does
#: not enforce them, and cannot delete records at all (docs/architecture.md, "Retention on the
#: embedded broker"); a real Kafka does.
RETENTION_MS: dict[str, int] = {
    MARKET_TICKS: 7 * 24 * _HOUR_MS,
    MARKET_BARS: 7 * 24 * _HOUR_MS,
    AUTH_REVOCATIONS: 7 * 24 * _HOUR_MS,
    AUTH_CLIENT_REVOCATIONS: 7 * 24 * _HOUR_MS,
    DIRECTORY_CHANGES: 30 * 24 * _HOUR_MS,
    DEAD_LETTERS: 14 * 24 * _HOUR_MS,
    # Its first record names the log's incarnation and must never be deleted (not compacted
    # either, which could drop it): no time retention, and no size retention below.
    BROKER_EPOCH: -1,
}
#: Kafka's own default, for a topic not listed above.
DEFAULT_RETENTION_MS = 7 * 24 * _HOUR_MS


def configs_of(topic: str) -> dict[str, str]:
    """The topic-level configs the project creates ``topic`` with."""
    retention_ms = RETENTION_MS.get(topic, DEFAULT_RETENTION_MS)
    configs = {"cleanup.policy": "delete", "retention.ms": str(retention_ms)}
    if retention_ms < 0:  # kept forever: by size neither
        configs["retention.bytes"] = "-1"
    return configs
