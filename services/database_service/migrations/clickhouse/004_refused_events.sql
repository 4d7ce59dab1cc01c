-- Events the working store refused (the consumers' `store_refused` dead letters), kept here as
-- well as on system.deadletters.v1: the embedded broker keeps its topics in memory, and such an
-- event counts as handled (its offset is committed, the client forgets it), so the dead-letter
-- topic alone would lose it at the next broker restart. Strings only, so that whatever the
-- market tables refused, this table takes. Written before the offset is committed: if this
-- insert fails too, the batch is retried as during an outage.
CREATE TABLE IF NOT EXISTS market.refused_events (
    refused_at     DateTime64(3, 'UTC') DEFAULT now64(3),
    consumer_group LowCardinality(String),
    topic          LowCardinality(String),
    partition      UInt32,
    offset         UInt64,
    reason         LowCardinality(String),
    error          String,
    key            String,
    value          String
) ENGINE = MergeTree
ORDER BY (topic, refused_at);
