-- pattern-validator: every verdict on a signal (validated or rejected, with reasons), the
-- event it published (republished as is when the signal is delivered again), and the
-- deduplication fingerprint (reloaded at start for the dedup window).
CREATE SCHEMA IF NOT EXISTS pattern_validator;

CREATE TABLE IF NOT EXISTS pattern_validator.verdicts (
    signal_id    uuid        PRIMARY KEY,
    verdict_id   uuid        NOT NULL UNIQUE,
    symbol       text        NOT NULL,
    timeframe    text        NOT NULL,
    bar_open_ns  bigint      NOT NULL,
    verdict      text        NOT NULL CHECK (verdict IN ('validated', 'rejected')),
    direction    text        NOT NULL,
    action       text        NOT NULL,
    confidence   double precision NOT NULL,
    strength     double precision NOT NULL,
    strategy     text        NOT NULL,
    reasons      jsonb       NOT NULL,
    models       jsonb       NOT NULL,
    fingerprint  text,
    event        jsonb       NOT NULL,
    decided_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS verdicts_by_symbol ON pattern_validator.verdicts (symbol, bar_open_ns DESC, decided_at DESC);
CREATE INDEX IF NOT EXISTS verdicts_by_time ON pattern_validator.verdicts (decided_at);
