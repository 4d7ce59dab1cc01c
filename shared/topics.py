"""Topic names, defined once. Dotted and versioned: a new event version gets a new topic."""

from __future__ import annotations

MARKET_TICKS = "market.ticks.v1"
MARKET_BARS = "market.bars.v1"
#: Access tokens revoked before their expiry (every verifier keeps the ids until then).
AUTH_REVOCATIONS = "auth.revocations.v1"
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
    DIRECTORY_CHANGES: 3,
    DEAD_LETTERS: 1,
    BROKER_EPOCH: 1,
}

#: Topic settings for the topics the project creates. The epoch's first record must never be deleted
#: (on a production Kafka: time and size retention off; not compacted, which could drop it).
CONFIGS: dict[str, dict[str, str]] = {
    BROKER_EPOCH: {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"},
}
