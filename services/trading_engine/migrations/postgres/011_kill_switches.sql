-- trading-engine, kill switches: one row per trip, kept after its reset (the history).
CREATE SCHEMA IF NOT EXISTS trading;

CREATE TABLE IF NOT EXISTS trading.kill_switches (
    switch_id        uuid        PRIMARY KEY,
    scope            text        NOT NULL CHECK (scope IN ('all', 'venue', 'tenant', 'account', 'strategy')),
    target           text,
    tenant           text        NOT NULL,
    state            text        NOT NULL CHECK (state IN ('tripped', 'reset')),
    actor            text        NOT NULL,
    reason           text        NOT NULL,
    automatic        boolean     NOT NULL DEFAULT false,
    canceled_orders  integer     NOT NULL DEFAULT 0 CHECK (canceled_orders >= 0),
    tripped_at       timestamptz NOT NULL,
    reset_by         text,
    reset_reason     text,
    reset_at         timestamptz,
    CHECK ((scope = 'all') = (target IS NULL)),
    -- A reset names its person, its reason and its time; a tripped switch has none of them.
    CHECK ((state = 'reset') = (reset_by IS NOT NULL AND reset_reason IS NOT NULL AND reset_at IS NOT NULL))
);

-- At most one tripped switch per scope and target: tripping it again is a no-op.
CREATE UNIQUE INDEX IF NOT EXISTS kill_switches_one_tripped
    ON trading.kill_switches (tenant, scope, COALESCE(target, '')) WHERE state = 'tripped';
CREATE INDEX IF NOT EXISTS kill_switches_by_tenant ON trading.kill_switches (tenant, tripped_at DESC);
