-- What GET /api/v1/market/symbols answers, kept up to date on every insert, so the
-- endpoint reads a few rows per symbol instead of every stored tick and bar with FINAL.
-- A materialized view sees each inserted block once: the summaries cost nothing to read
-- and their size depends on the number of symbols (and unmerged parts), never on history.

-- Per symbol: ticks stored, first and last tick time. Rows of one symbol are summed on
-- merge and by the query (GROUP BY), so unmerged parts are never double counted.
-- `ticks` counts stored rows: a redelivered tick is one row to every FINAL reader but
-- is counted again here if it reaches storage (the consumer's memory of recent ids
-- keeps that to a replay after a crash of database-service).
CREATE TABLE IF NOT EXISTS market.tick_summary (
    symbol   LowCardinality(String),
    ticks    SimpleAggregateFunction(sum, UInt64),
    first_ts SimpleAggregateFunction(min, DateTime64(6, 'UTC')),
    last_ts  SimpleAggregateFunction(max, DateTime64(6, 'UTC'))
) ENGINE = AggregatingMergeTree
ORDER BY symbol;

CREATE MATERIALIZED VIEW IF NOT EXISTS market.tick_summary_mv TO market.tick_summary AS
SELECT symbol, toUInt64(count()) AS ticks, min(ts) AS first_ts, max(ts) AS last_ts
FROM market.ticks
GROUP BY symbol;

-- The (symbol, timeframe) pairs that have bars.
CREATE TABLE IF NOT EXISTS market.bar_series (
    symbol    LowCardinality(String),
    timeframe LowCardinality(String)
) ENGINE = ReplacingMergeTree
ORDER BY (symbol, timeframe);

CREATE MATERIALIZED VIEW IF NOT EXISTS market.bar_series_mv TO market.bar_series AS
SELECT DISTINCT symbol, timeframe
FROM market.bars;

-- Backfill from what was stored before the views existed (deduplicated, as readers see it).
-- The kit applies this once, when database-service opens ClickHouse and before its
-- consumers start, so no insert runs between the views' creation and these reads.
INSERT INTO market.tick_summary
SELECT symbol, toUInt64(count()), min(ts), max(ts)
FROM market.ticks FINAL
GROUP BY symbol;

INSERT INTO market.bar_series
SELECT DISTINCT symbol, timeframe
FROM market.bars;
