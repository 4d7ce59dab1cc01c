-- performance-analytics: what it needs to rebuild its state after a restart without replaying
-- the bus (fills, signals, the last quotes) and the equity curves it sampled.
-- ReplacingMergeTree + reads with FINAL: a row written twice (a redelivery) is one row.
CREATE DATABASE IF NOT EXISTS performance;

-- Every fill counted, in the order it was counted (received_ns), with the model weights and
-- confidence decided when it arrived: a rebuild replays exactly what was computed live.
CREATE TABLE IF NOT EXISTS performance.fills (
    event_id      UUID,
    received_ns   Int64,
    tenant        LowCardinality(String),
    account_id    String,
    symbol        LowCardinality(String),
    side          LowCardinality(String),
    quantity      Decimal64(8),
    price         Decimal64(8),
    commission    Decimal128(8),
    contract_size Decimal64(8),
    ts_event      Int64,
    strategy      Nullable(String),
    bot_id        Nullable(String),
    signal_id     Nullable(String),
    model_weights String,
    confidence    Nullable(Float64)
) ENGINE = ReplacingMergeTree
ORDER BY (tenant, account_id, event_id);

-- Validated signals: confidence and member weights, for fills that arrive after a restart.
CREATE TABLE IF NOT EXISTS performance.signals (
    signal_id  String,
    ts_event   Int64,
    symbol     LowCardinality(String),
    confidence Float64,
    weights    String
) ENGINE = ReplacingMergeTree
ORDER BY signal_id;

-- The last quote per symbol at each snapshot: the marks a restart starts from.
CREATE TABLE IF NOT EXISTS performance.marks (
    symbol LowCardinality(String),
    ts     DateTime64(3, 'UTC'),
    bid    Decimal64(8),
    ask    Decimal64(8)
) ENGINE = ReplacingMergeTree
ORDER BY (symbol, ts);

-- One row per account, scope and snapshot: the equity curves (docs/performance.md).
CREATE TABLE IF NOT EXISTS performance.equity (
    tenant         LowCardinality(String),
    account_id     String,
    scope_kind     LowCardinality(String),
    scope          String,
    ts             DateTime64(3, 'UTC'),
    equity         Float64,
    realised       Float64,
    commission     Float64,
    unrealised     Float64,
    gross_exposure Float64,
    net_exposure   Float64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant, account_id, scope_kind, scope, ts);
