-- data-bridge builds bars from ticks; its per-partition builder state is checkpointed
-- here together with the Kafka offset it corresponds to, so a restart or a rebalance
-- resumes exactly where the last checkpoint left off (replayed bars have the same ids).
CREATE SCHEMA IF NOT EXISTS data_bridge;

CREATE TABLE IF NOT EXISTS data_bridge.bar_checkpoints (
    consumer_group text    NOT NULL,
    topic          text    NOT NULL,
    partition      integer NOT NULL,
    next_offset    bigint  NOT NULL,
    state          jsonb   NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);
