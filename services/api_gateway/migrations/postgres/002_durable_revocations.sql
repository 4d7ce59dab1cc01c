-- api-gateway: revocations are published until the bus acknowledged them, and every verifier
-- can rebuild its revoked set from here (GET /oauth2/revocations) after the broker lost its topics.

-- NULL until the bus acknowledged the TokenRevoked event; a sweep publishes what is still NULL.
ALTER TABLE gateway.revoked_access_tokens ADD COLUMN IF NOT EXISTS published_at timestamptz;
CREATE INDEX IF NOT EXISTS revoked_access_tokens_unpublished
    ON gateway.revoked_access_tokens (revoked_at) WHERE published_at IS NULL;

-- Every token of a client issued before issued_before is revoked (the client was disabled, its
-- secret rotated, or an admin revoked its tokens: ClientTokensRevoked from user-service), until
-- expires_at, when every such token has expired anyway. One row per client: the latest cut-off
-- covers every earlier one.
CREATE TABLE IF NOT EXISTS gateway.client_revocations (
    client_id     text        PRIMARY KEY,
    tenant        text        NOT NULL,
    issued_before timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    reason        text        NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS client_revocations_expiry ON gateway.client_revocations (expires_at);
