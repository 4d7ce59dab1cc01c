-- Market data. The same DDL runs on chdb (embedded) and a ClickHouse server.
-- ReplacingMergeTree + reads with FINAL make storage idempotent under redelivery:
-- a tick or bar stored twice is one row to every reader.
CREATE DATABASE IF NOT EXISTS market;

CREATE TABLE IF NOT EXISTS market.ticks (
    symbol      LowCardinality(String),
    ts          DateTime64(6, 'UTC'),
    event_id    UUID,
    bid         Decimal64(8),
    ask         Decimal64(8),
    last        Nullable(Decimal64(8)),
    volume      Decimal64(8),
    flags       UInt32,
    source      LowCardinality(String),
    received_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (symbol, ts, event_id);

CREATE TABLE IF NOT EXISTS market.bars (
    symbol      LowCardinality(String),
    timeframe   LowCardinality(String),
    ts          DateTime64(3, 'UTC'),
    open        Decimal64(8),
    high        Decimal64(8),
    low         Decimal64(8),
    close       Decimal64(8),
    volume      UInt64,
    real_volume Decimal64(8),
    event_id    UUID,
    built_at    DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(built_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (symbol, timeframe, ts);
