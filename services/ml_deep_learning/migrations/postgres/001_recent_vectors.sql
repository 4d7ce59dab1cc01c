-- ml-deep-learning's sequence windows (services/ml_deep_learning/windows.py): the last feature
-- vectors of every symbol and timeframe, written before their offsets commit, so a restarted
-- service predicts from a full window at once instead of waiting `window` bars again.
CREATE SCHEMA IF NOT EXISTS ml_deep_learning;

CREATE TABLE ml_deep_learning.recent_vectors (
    symbol text NOT NULL,
    timeframe text NOT NULL,
    ts_event bigint NOT NULL,
    event_id uuid NOT NULL,
    feature_set text NOT NULL,
    -- The names in the vector's order (jsonb would not keep it) and their values (NULL: missing).
    names text[] NOT NULL,
    vals double precision[] NOT NULL,
    PRIMARY KEY (symbol, timeframe, ts_event)
);
