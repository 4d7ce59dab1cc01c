-- api-gateway: refresh tokens (RFC 6749 §6) and access-token revocations.
-- A *family* is one original grant; each refresh rotates its token (the old one is marked
-- used, a new one issued in the same family). Presenting a used token is a replay: the
-- whole family is revoked, with every access token it produced (hence the jti list).
-- Refresh tokens are stored only as the SHA-256 (hex) of the token string.
CREATE SCHEMA IF NOT EXISTS gateway;

CREATE TABLE IF NOT EXISTS gateway.refresh_families (
    family_id  uuid        PRIMARY KEY,
    client_id  text        NOT NULL,
    tenant     text        NOT NULL,
    subject    text        NOT NULL,
    -- The scope of the original grant: a refresh may narrow it, never widen it.
    scope      text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    revoked_reason text
);
CREATE INDEX IF NOT EXISTS refresh_families_client ON gateway.refresh_families (client_id);

CREATE TABLE IF NOT EXISTS gateway.refresh_tokens (
    token_hash text        PRIMARY KEY CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    family_id  uuid        NOT NULL REFERENCES gateway.refresh_families ON DELETE CASCADE,
    client_id  text        NOT NULL,
    tenant     text        NOT NULL,
    scope      text        NOT NULL,
    issued_at  timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    revoked_at timestamptz
);
CREATE INDEX IF NOT EXISTS refresh_tokens_family ON gateway.refresh_tokens (family_id);
CREATE INDEX IF NOT EXISTS refresh_tokens_expiry ON gateway.refresh_tokens (expires_at);

-- Access tokens issued from a family (by the grant that created it and by each refresh).
CREATE TABLE IF NOT EXISTS gateway.family_access_tokens (
    jti        text        PRIMARY KEY,
    family_id  uuid        NOT NULL REFERENCES gateway.refresh_families ON DELETE CASCADE,
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS family_access_tokens_family ON gateway.family_access_tokens (family_id, expires_at);

-- Access tokens revoked before their expiry (RFC 7009). The bus carries them to every
-- verifier; this table lets every gateway process (and a restarted one) answer
-- introspection correctly without depending on the bus.
CREATE TABLE IF NOT EXISTS gateway.revoked_access_tokens (
    jti        text        PRIMARY KEY,
    client_id  text        NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT now(),
    reason     text        NOT NULL
);
CREATE INDEX IF NOT EXISTS revoked_access_tokens_expiry ON gateway.revoked_access_tokens (expires_at);
