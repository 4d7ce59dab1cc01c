-- trading-engine: strategies ("bots"). A bot's row holds its lifecycle state (version counts its
-- changes), its config and its memory (position it believes it holds, stops, maturity, the newest
-- input processed and the dedup window's fingerprints), so a restart resumes it exactly.
CREATE SCHEMA IF NOT EXISTS trading;

CREATE TABLE IF NOT EXISTS trading.bots (
    bot_id      uuid        PRIMARY KEY,
    tenant      text        NOT NULL,
    account_id  text        NOT NULL,
    symbol      text        NOT NULL,
    strategy    text        NOT NULL CHECK (strategy IN ('signals', 'rsi')),
    config      jsonb       NOT NULL,
    state       text        NOT NULL CHECK (state IN ('created', 'running', 'paused', 'stopped', 'deleted')),
    version     integer     NOT NULL CHECK (version >= 1),
    memory      jsonb       NOT NULL,
    created_ns  bigint      NOT NULL,
    updated_ns  bigint      NOT NULL
);

-- One active bot per symbol and account: two bots on one net position would trade against each other.
CREATE UNIQUE INDEX IF NOT EXISTS bots_one_active_per_symbol
    ON trading.bots (tenant, account_id, symbol) WHERE state IN ('created', 'running', 'paused');
CREATE INDEX IF NOT EXISTS bots_by_tenant ON trading.bots (tenant, created_ns);

-- Every version of every bot (the history), and the outbox of its BotChanged events: a row is
-- published after its transaction commits, and again (same event id) until marked published.
CREATE TABLE IF NOT EXISTS trading.bot_transitions (
    bot_id      uuid        NOT NULL REFERENCES trading.bots (bot_id),
    version     integer     NOT NULL,
    from_state  text,
    to_state    text        NOT NULL,
    actor       text        NOT NULL,
    ts_ns       bigint      NOT NULL,
    config      jsonb       NOT NULL,
    published   boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (bot_id, version)
);
CREATE INDEX IF NOT EXISTS bot_transitions_unpublished ON trading.bot_transitions (ts_ns) WHERE NOT published;

-- A tenant's auto mode (versioned: every change is a new version, by whom).
CREATE TABLE IF NOT EXISTS trading.bot_auto_config (
    tenant      text        PRIMARY KEY,
    config      jsonb       NOT NULL,
    version     integer     NOT NULL CHECK (version >= 1),
    actor       text        NOT NULL,
    updated_ns  bigint      NOT NULL
);
