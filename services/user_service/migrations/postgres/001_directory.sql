-- user-service: tenants, users, role assignments and OAuth2 clients (docs/auth.md).
-- Every tenant-owned row carries tenant_id, and child rows reference their parent
-- through (tenant_id, id) so a row can never point into another tenant.
-- Scopes and roles are validated by the service against shared.auth.scopes (their one
-- definition); the checks here only hold invariants that must never break.
CREATE SCHEMA IF NOT EXISTS users;

CREATE TABLE IF NOT EXISTS users.tenants (
    id         text        PRIMARY KEY CHECK (id ~ '^[a-z][a-z0-9-]{1,31}$'),
    name       text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    disabled   boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS users.users (
    id           uuid        PRIMARY KEY,
    tenant_id    text        NOT NULL REFERENCES users.tenants (id),
    username     text        NOT NULL,
    display_name text        NOT NULL,
    disabled     boolean     NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id)
);

-- Usernames are unique per tenant regardless of case ("Alice" and "alice" are one person).
CREATE UNIQUE INDEX IF NOT EXISTS users_username_per_tenant ON users.users (tenant_id, lower(username));

CREATE TABLE IF NOT EXISTS users.user_roles (
    tenant_id text NOT NULL,
    user_id   uuid NOT NULL,
    role      text NOT NULL,
    PRIMARY KEY (tenant_id, user_id, role),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users.users (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS users.clients (
    client_id         text        PRIMARY KEY,
    tenant_id         text        NOT NULL REFERENCES users.tenants (id),
    name              text        NOT NULL,
    -- Only ever an argon2id hash: a plain secret can never be stored by mistake.
    secret_hash       text        NOT NULL CHECK (secret_hash LIKE '$argon2id$%'),
    scopes            text[]      NOT NULL CHECK (NOT ('internal' = ANY (scopes))),
    grant_types       text[]      NOT NULL DEFAULT '{client_credentials}'
                                  CHECK (grant_types <@ ARRAY['client_credentials', 'refresh_token']::text[]),
    disabled          boolean     NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now(),
    -- When the current secret was set (creation or the last rotation).
    secret_rotated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS clients_by_tenant ON users.clients (tenant_id, created_at);

-- The clients the bootstrap created, by purpose ('admin', 'data-collector'), so
-- "does the bootstrap admin exist" is a lookup, not a guess from names or scopes.
CREATE TABLE IF NOT EXISTS users.bootstrap_clients (
    purpose    text        PRIMARY KEY,
    client_id  text        NOT NULL UNIQUE REFERENCES users.clients (client_id),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Transactional outbox: each change's DirectoryChanged is written in the same transaction
-- as the change, published after commit, and deleted once the broker acknowledged it. A
-- publish that fails (broker down) is retried by a sweep, so the audit trail loses nothing.
CREATE TABLE IF NOT EXISTS users.outbox (
    event_id   uuid        PRIMARY KEY,
    key        bytea       NOT NULL,
    payload    bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
