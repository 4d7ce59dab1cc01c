-- tick_summary counts ticks, not rows. database-service stores a tick only if its row
-- key (symbol, ts, event_id) is not stored yet (MarketRepository.insert_ticks), so a
-- tick re-sent after a broker restart or replayed after a crash is not a second row.
-- The one row it writes again on purpose, when a whole insert was stored already (the
-- store's control write, see storing.py: an insert must still write), is marked
-- `rewrite` and not counted. Replacing merges may keep either copy: no reader reads it.
ALTER TABLE market.ticks ADD COLUMN IF NOT EXISTS rewrite UInt8 DEFAULT 0;

-- No insert runs between the drop and the create: the kit applies migrations when
-- database-service opens ClickHouse, before its consumers start.
DROP VIEW IF EXISTS market.tick_summary_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS market.tick_summary_mv TO market.tick_summary AS
SELECT symbol, toUInt64(countIf(rewrite = 0)) AS ticks, min(ts) AS first_ts, max(ts) AS last_ts
FROM market.ticks
GROUP BY symbol;

-- Counted again from what is stored (deduplicated, as readers see it): before this
-- migration a tick stored twice was counted twice. One scan of the history, once.
TRUNCATE TABLE IF EXISTS market.tick_summary;

INSERT INTO market.tick_summary
SELECT symbol, toUInt64(count()), min(ts), max(ts)
FROM market.ticks FINAL
GROUP BY symbol;
