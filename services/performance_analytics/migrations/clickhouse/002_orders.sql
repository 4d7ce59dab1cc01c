-- The newest state of every order (OrderUpdated): how many orders of an account were filled,
-- rejected, canceled... Each change is a new version; ReplacingMergeTree(version) + FINAL keeps
-- the newest, and a change delivered twice is one row.
CREATE TABLE IF NOT EXISTS performance.orders (
    tenant     LowCardinality(String),
    account_id String,
    order_id   UUID,
    version    UInt32,
    state      LowCardinality(String),
    symbol     LowCardinality(String),
    ts_event   Int64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant, account_id, order_id);
