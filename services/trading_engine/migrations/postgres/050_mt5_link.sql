-- The MT5 venue's link to the trader's PC (services/trading_engine/venues/mt5.py).
CREATE SCHEMA IF NOT EXISTS trading;

-- Commands for the terminal, taken by metatrader-connector's long poll. ``queued``: nobody has
-- it; ``delivered``: handed out (maybe acted on); ``done``: the terminal's answer arrived;
-- ``withdrawn``: never handed out before its time ran out (it never reached the venue).
CREATE TABLE IF NOT EXISTS trading.mt5_commands (
    command_id      uuid        PRIMARY KEY,
    tenant          text        NOT NULL,
    account_id      text        NOT NULL,
    client_order_id text        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('submit', 'cancel')),
    payload         jsonb       NOT NULL,
    state           text        NOT NULL CHECK (state IN ('queued', 'delivered', 'done', 'withdrawn')),
    attempts        integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    finished_at     timestamptz,
    UNIQUE (account_id, client_order_id, kind)
);
CREATE INDEX IF NOT EXISTS mt5_commands_open ON trading.mt5_commands (account_id, created_at)
    WHERE state IN ('queued', 'delivered');

-- The latest state of each MT5 account as its terminal reported it.
CREATE TABLE IF NOT EXISTS trading.mt5_snapshots (
    account_id  text        PRIMARY KEY,
    tenant      text        NOT NULL,
    taken_at_ns bigint      NOT NULL,
    document    jsonb       NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
