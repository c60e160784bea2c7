-- Tenants and their API keys. Only a SHA-256 of each key is stored: keys are 190+ bits of randomness,
-- so a fast hash is enough (no password-style stretching needed), and lookup stays one index probe.
CREATE TABLE IF NOT EXISTS tenants (
    id          text PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS api_keys (
    id          text PRIMARY KEY,            -- the key's public prefix, shown in listings
    tenant_id   text NOT NULL REFERENCES tenants(id),
    key_hash    bytea NOT NULL UNIQUE,
    label       text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys (tenant_id);
