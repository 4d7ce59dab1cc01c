-- ai-orchestration: per symbol and timeframe, what must survive a restart (the RSI rule's
-- position and maturity, recent closes and calls awaiting their horizon, the members'
-- hit-rate windows, the confidence calibration), one JSON document per series.
CREATE SCHEMA IF NOT EXISTS ai_orchestration;

CREATE TABLE IF NOT EXISTS ai_orchestration.series_state (
    symbol     text        NOT NULL,
    timeframe  text        NOT NULL,
    state      jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, timeframe)
);
