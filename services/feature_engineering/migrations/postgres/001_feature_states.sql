-- feature-engineering keeps one streaming feature state per (symbol, timeframe, feature set):
-- the open time of the last bar it applied and the state as JSON (shared/features.py), written
-- after that bar's feature vector was published, so a restart resumes the warm-ups.
CREATE SCHEMA IF NOT EXISTS feature_engineering;

CREATE TABLE IF NOT EXISTS feature_engineering.feature_states (
    symbol       text        NOT NULL,
    timeframe    text        NOT NULL,
    feature_set  text        NOT NULL,
    last_open_ns bigint      NOT NULL,
    state        jsonb       NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, timeframe, feature_set)
);
