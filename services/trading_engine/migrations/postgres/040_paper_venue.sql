-- The paper venue's own truth (services/trading_engine/venues/paper.py): the orders it holds, the
-- deals it made and the net positions they left, per account. Separate from the engine's records
-- of orders, fills and positions, so that reconciling the engine against the venue means something
-- and a restart loses nothing: resting orders are rows and keep working on the next ticks.
-- Quantities are lots, prices and money Decimal (numeric); times are ns since the epoch, UTC.
CREATE SCHEMA IF NOT EXISTS trading;

CREATE TABLE IF NOT EXISTS trading.paper_orders (
    id              bigserial PRIMARY KEY,
    account_id      text     NOT NULL,
    client_order_id text     NOT NULL,
    order_id        uuid     NOT NULL,
    symbol          text     NOT NULL,
    side            text     NOT NULL CHECK (side IN ('buy', 'sell')),
    type            text     NOT NULL CHECK (type IN ('market', 'limit', 'stop', 'stop_limit')),
    time_in_force   text     NOT NULL CHECK (time_in_force IN ('gtc', 'day', 'ioc', 'fok')),
    quantity        numeric  NOT NULL CHECK (quantity > 0),
    limit_price     numeric,
    stop_price      numeric,
    stop_loss       numeric,
    take_profit     numeric,
    state           text     NOT NULL
        CHECK (state IN ('accepted', 'partially_filled', 'filled', 'canceled', 'rejected', 'expired')),
    filled_quantity numeric  NOT NULL DEFAULT 0 CHECK (filled_quantity >= 0 AND filled_quantity <= quantity),
    -- A stop or stop-limit whose stop price was reached (a stop-limit then rests as a limit).
    triggered       boolean  NOT NULL DEFAULT false,
    -- Fills made so far: the next deal of the order is <venue_order_id>-<fill_count + 1>.
    fill_count      integer  NOT NULL DEFAULT 0,
    submitted_ns    bigint   NOT NULL,
    -- The first tick time the order may execute at (submit time + the venue's latency).
    eligible_ns     bigint   NOT NULL,
    -- When a day order expires (the end of its trading day); NULL for the other times in force.
    expires_ns      bigint,
    reason_code     text,
    reason          text,
    updated_ns      bigint   NOT NULL,
    UNIQUE (account_id, client_order_id)
);

-- What a tick looks at: the open orders of its symbol.
CREATE INDEX IF NOT EXISTS paper_orders_open_by_symbol
    ON trading.paper_orders (symbol, id) WHERE state IN ('accepted', 'partially_filled');
CREATE INDEX IF NOT EXISTS paper_orders_open_by_account
    ON trading.paper_orders (account_id, id) WHERE state IN ('accepted', 'partially_filled');

CREATE TABLE IF NOT EXISTS trading.paper_deals (
    account_id      text     NOT NULL,
    -- Stable: <venue_order_id>-<n>, the order's n-th fill; the same deal is never made twice.
    venue_fill_id   text     NOT NULL,
    order_pk        bigint   NOT NULL REFERENCES trading.paper_orders (id),
    fill_no         integer  NOT NULL CHECK (fill_no >= 1),
    client_order_id text     NOT NULL,
    symbol          text     NOT NULL,
    side            text     NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity        numeric  NOT NULL CHECK (quantity > 0),
    price           numeric  NOT NULL CHECK (price > 0),
    commission      numeric  NOT NULL CHECK (commission >= 0),
    ts_ns           bigint   NOT NULL,
    PRIMARY KEY (account_id, venue_fill_id)
);

CREATE INDEX IF NOT EXISTS paper_deals_by_time ON trading.paper_deals (account_id, ts_ns, order_pk, fill_no);
CREATE INDEX IF NOT EXISTS paper_deals_by_order ON trading.paper_deals (order_pk, fill_no);

-- Netting: one signed position per account and symbol (> 0 long, < 0 short), at its average price.
CREATE TABLE IF NOT EXISTS trading.paper_positions (
    account_id    text     NOT NULL,
    symbol        text     NOT NULL,
    quantity      numeric  NOT NULL,
    average_price numeric  NOT NULL,
    -- Profit realised by reducing, closing or flipping the position (profit currency, before fees).
    realized_pnl  numeric  NOT NULL DEFAULT 0,
    updated_ns    bigint   NOT NULL,
    PRIMARY KEY (account_id, symbol)
);

-- The reports owed to the engine (an outbox), written in the transaction of what they report and
-- deleted once the sink took them, in order; a report the sink refused (or a process that died
-- before delivering it) stays, and the next delivery pass delivers it: at least once, in order.
CREATE TABLE IF NOT EXISTS trading.paper_reports (
    seq             bigserial PRIMARY KEY,
    account_id      text     NOT NULL,
    client_order_id text     NOT NULL,
    kind            text     NOT NULL CHECK (kind IN ('accepted', 'rejected', 'fill', 'canceled', 'expired')),
    ts_ns           bigint   NOT NULL,
    venue_order_id  text,
    venue_fill_id   text,
    reason_code     text,
    reason          text
);
