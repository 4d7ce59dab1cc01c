-- A checkpoint proves its bars were published; the embedded broker's log can die before
-- database-service stored them. bars_offsets records, with each checkpoint, the highest
-- market.bars.v1 offset (per bars partition) its bars reached; a checkpoint whose bars the
-- storing group has committed past is copied to bar_stored_checkpoints, which ingest progress
-- confirms from and a new broker log resumes from. NULL bars_offsets: written before this.
ALTER TABLE data_bridge.bar_checkpoints ADD COLUMN IF NOT EXISTS bars_offsets jsonb;

CREATE TABLE IF NOT EXISTS data_bridge.bar_stored_checkpoints (
    consumer_group text    NOT NULL,
    topic          text    NOT NULL,
    partition      integer NOT NULL,
    epoch          text    NOT NULL,
    next_offset    bigint  NOT NULL,
    state          jsonb   NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);
