-- trading-engine, pre-trade risk: every version of every tenant's limits and account's override.
-- The current limits are the highest version per (tenant, account); versions are never edited.
CREATE SCHEMA IF NOT EXISTS trading;

CREATE TABLE IF NOT EXISTS trading.risk_limit_versions (
    tenant      text        NOT NULL,
    -- NULL: the tenant's full set; otherwise the overrides of this account of the tenant.
    account_id  text,
    version     integer     NOT NULL CHECK (version >= 1),
    limits      jsonb       NOT NULL,
    actor       text        NOT NULL,
    reason      text,
    created_at  timestamptz NOT NULL
);

-- One row per version; a tenant's own versions (account NULL) are numbered apart from each account's.
CREATE UNIQUE INDEX IF NOT EXISTS risk_limit_versions_key
    ON trading.risk_limit_versions (tenant, COALESCE(account_id, ''), version DESC);
