-- user-service: revoking a client's tokens, and what a revoked client made.
-- Who set a client up (the `sub` of the caller's token, or 'bootstrap'): when a client is
-- disabled, rotated or has its tokens revoked, the clients its live tokens created or
-- re-keyed are disabled with it (docs/security.md, "Token security").
ALTER TABLE users.clients ADD COLUMN IF NOT EXISTS created_by text;
ALTER TABLE users.clients ADD COLUMN IF NOT EXISTS secret_set_by text;
-- The latest per-client cut-off: tokens issued before it are refused everywhere.
ALTER TABLE users.clients ADD COLUMN IF NOT EXISTS tokens_revoked_before timestamptz;
CREATE INDEX IF NOT EXISTS clients_created_by ON users.clients (created_by, created_at);
CREATE INDEX IF NOT EXISTS clients_secret_set_by ON users.clients (secret_set_by, secret_rotated_at);

-- The outbox now carries two events: DirectoryChanged and ClientTokensRevoked.
ALTER TABLE users.outbox ADD COLUMN IF NOT EXISTS topic text NOT NULL DEFAULT 'users.directory.v1';
ALTER TABLE users.outbox ALTER COLUMN topic DROP DEFAULT;
