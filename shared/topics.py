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
#: One feature vector per closed bar (feature-engineering).
FEATURES = "features.vectors.v1"
#: One prediction per champion model per feature vector (ml-supervised, ml-deep-learning).
PREDICTIONS = "ml.predictions.v1"
#: Feature vectors a model refused to predict on (e.g. a feature list that is not its own).
PREDICTION_REFUSALS = "ml.refusals.v1"
#: Registry changes and flags of models: registered, promoted, retired, flagged (expiry, drift).
MODEL_LIFECYCLE = "ml.models.v1"
#: Feature drift of a model's inputs against its training distribution (pattern-validator).
FEATURE_DRIFT = "ml.drift.v1"
#: One signal per symbol and bar, combined from the predictions (ai-orchestration).
SIGNALS = "signals.v1"
#: Signals pattern-validator accepted: what the trading engine acts on.
SIGNALS_VALIDATED = "signals.validated.v1"
#: Signals pattern-validator rejected, with machine-readable reasons.
SIGNALS_REJECTED = "signals.rejected.v1"
#: Every state change of every order, as the order's full state after it (trading-engine).
ORDERS = "trading.orders.v1"
#: Every execution at a venue: one record per fill, fees and attribution included (trading-engine).
FILLS = "trading.fills.v1"
#: Every new version of a tenant's or account's pre-trade risk limits (trading-engine).
RISK_LIMITS = "trading.limits.v1"
#: Kill switches tripped and reset, by whom and why (trading-engine).
KILL_SWITCHES = "trading.killswitch.v1"
#: Bots created, started, paused, resumed, stopped and deleted (trading-engine).
BOTS = "trading.bots.v1"

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
    FEATURES: 6,
    PREDICTIONS: 6,
    PREDICTION_REFUSALS: 1,
    MODEL_LIFECYCLE: 1,
    FEATURE_DRIFT: 1,
    SIGNALS: 6,
    SIGNALS_VALIDATED: 6,
    SIGNALS_REJECTED: 6,
    ORDERS: 6,
    FILLS: 6,
    RISK_LIMITS: 1,
    KILL_SWITCHES: 1,
    BOTS: 3,
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
    # The intelligence flow's records are recomputable from bars, and its consumers act on
    # the newest ones; a week like the market topics. Lifecycle and drift wait for a human.
    FEATURES: 7 * 24 * _HOUR_MS,
    PREDICTIONS: 7 * 24 * _HOUR_MS,
    PREDICTION_REFUSALS: 14 * 24 * _HOUR_MS,
    MODEL_LIFECYCLE: 30 * 24 * _HOUR_MS,
    FEATURE_DRIFT: 14 * 24 * _HOUR_MS,
    SIGNALS: 7 * 24 * _HOUR_MS,
    SIGNALS_VALIDATED: 7 * 24 * _HOUR_MS,
    SIGNALS_REJECTED: 7 * 24 * _HOUR_MS,
    # Orders and fills are stored by trading-engine (PostgreSQL) and performance-analytics
    # (ClickHouse); the topics are how they and the audit trail learn of them. Controls and
    # bots are rare and wait for a human, like lifecycle events.
    ORDERS: 30 * 24 * _HOUR_MS,
    FILLS: 30 * 24 * _HOUR_MS,
    RISK_LIMITS: 30 * 24 * _HOUR_MS,
    KILL_SWITCHES: 30 * 24 * _HOUR_MS,
    BOTS: 30 * 24 * _HOUR_MS,
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
