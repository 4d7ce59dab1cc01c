-- trading-engine's core: accounts, orders and their history, fills, positions, balance
-- reservations, idempotency keys and the transactional outbox. Money and quantities are
-- numeric (Decimal in Python), never float. Risk (010+) and bots (020+) have their own files.
CREATE SCHEMA IF NOT EXISTS trading;

-- An account at a venue. Its available money is balance - sum(positions.margin) -
-- sum(reservations.amount); every change of any of them locks the account row first.
CREATE TABLE IF NOT EXISTS trading.accounts (
    id             text        PRIMARY KEY,
    tenant         text        NOT NULL,
    venue          text        NOT NULL CHECK (venue IN ('paper', 'mt5')),
    name           text        NOT NULL,
    currency       text        NOT NULL,
    balance        numeric     NOT NULL,
    -- Share of the notional held as margin; NULL: each instrument's own rate.
    margin_rate    numeric     CHECK (margin_rate IS NULL OR (margin_rate > 0 AND margin_rate <= 1)),
    -- The venue's own id of the account (an MT5 login), where it has one.
    venue_account  text,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS accounts_tenant ON trading.accounts (tenant, id);

CREATE TABLE IF NOT EXISTS trading.orders (
    id                 uuid        PRIMARY KEY,
    tenant             text        NOT NULL,
    account_id         text        NOT NULL REFERENCES trading.accounts (id),
    venue              text        NOT NULL,
    client_order_id    text        NOT NULL,
    symbol             text        NOT NULL,
    side               text        NOT NULL CHECK (side IN ('buy', 'sell')),
    type               text        NOT NULL CHECK (type IN ('market', 'limit', 'stop', 'stop_limit')),
    quantity           numeric     NOT NULL CHECK (quantity > 0),
    limit_price        numeric,
    stop_price         numeric,
    time_in_force      text        NOT NULL,
    stop_loss          numeric,
    take_profit        numeric,
    state              text        NOT NULL,
    version            integer     NOT NULL,
    filled_quantity    numeric     NOT NULL DEFAULT 0,
    average_fill_price numeric,
    venue_order_id     text,
    reason_code        text,
    reason             text,
    attribution        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    actor              text        NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    -- When the order was committed as pending_submit (ns): the reconciliation's grace counts from it.
    submitted_ns       bigint,
    UNIQUE (tenant, account_id, client_order_id)
);
CREATE INDEX IF NOT EXISTS orders_open ON trading.orders (state)
    WHERE state IN ('pending_submit', 'accepted', 'partially_filled', 'unknown');
CREATE INDEX IF NOT EXISTS orders_by_account ON trading.orders (tenant, account_id, created_at DESC);
-- Reports name the account and the client order id.
CREATE UNIQUE INDEX IF NOT EXISTS orders_by_client_id ON trading.orders (account_id, client_order_id);

-- Every change of every order (version 1 is the order as created).
CREATE TABLE IF NOT EXISTS trading.order_transitions (
    order_id    uuid        NOT NULL REFERENCES trading.orders (id),
    version     integer     NOT NULL,
    from_state  text,
    to_state    text        NOT NULL,
    reason_code text,
    reason      text,
    at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, version)
);

-- fill_id = shared.events.fill_event_id(venue, account_id, venue_fill_id): a deal reported twice is one row.
CREATE TABLE IF NOT EXISTS trading.fills (
    fill_id         uuid        PRIMARY KEY,
    order_id        uuid        NOT NULL REFERENCES trading.orders (id),
    tenant          text        NOT NULL,
    account_id      text        NOT NULL,
    venue           text        NOT NULL,
    venue_fill_id   text        NOT NULL,
    symbol          text        NOT NULL,
    side            text        NOT NULL,
    quantity        numeric     NOT NULL CHECK (quantity > 0),
    price           numeric     NOT NULL,
    commission      numeric     NOT NULL,
    currency        text        NOT NULL,
    realized_pnl    numeric     NOT NULL,
    ts_event        bigint      NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS fills_by_account ON trading.fills (tenant, account_id, ts_event DESC);
CREATE INDEX IF NOT EXISTS fills_by_order ON trading.fills (order_id);

-- Net position per account and symbol: quantity signed (> 0 long), in lots.
CREATE TABLE IF NOT EXISTS trading.positions (
    account_id    text        NOT NULL REFERENCES trading.accounts (id),
    symbol        text        NOT NULL,
    tenant        text        NOT NULL,
    quantity      numeric     NOT NULL,
    average_price numeric     NOT NULL,
    realized_pnl  numeric     NOT NULL DEFAULT 0,
    -- Margin the open quantity holds (notional at the average price * margin rate).
    margin        numeric     NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, symbol)
);

-- Money held for an open order until it fills, is rejected, canceled or expires.
CREATE TABLE IF NOT EXISTS trading.reservations (
    order_id   uuid        PRIMARY KEY REFERENCES trading.orders (id),
    account_id text        NOT NULL REFERENCES trading.accounts (id),
    amount     numeric     NOT NULL CHECK (amount >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS reservations_by_account ON trading.reservations (account_id);

-- POST /orders with an Idempotency-Key: the request's hash and, once answered, the answer.
CREATE TABLE IF NOT EXISTS trading.idempotency_keys (
    tenant       text        NOT NULL,
    key          text        NOT NULL,
    request_hash text        NOT NULL,
    order_id     uuid,
    status       integer,
    body         jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, key)
);

-- shared.outbox: OrderUpdated and Fill events, committed with the change that makes them.
CREATE TABLE IF NOT EXISTS trading.outbox (
    event_id   uuid        PRIMARY KEY,
    topic      text        NOT NULL,
    key        bytea       NOT NULL,
    payload    bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
