-- The human review queue: texts the guard flagged. Only the redacted text and finding metadata are stored,
-- never a raw value. No foreign key to tenants: internal calls may carry a tenant that has no API key yet.
CREATE TABLE IF NOT EXISTS guard_reviews (
    id             uuid PRIMARY KEY,
    tenant_id      text NOT NULL,
    status         text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'resolved')),
    direction      text NOT NULL CHECK (direction IN ('input', 'output')),
    action         text NOT NULL,
    redacted_text  text NOT NULL,
    text_chars     int  NOT NULL,
    findings       jsonb NOT NULL,
    decision       text CHECK (decision IN ('confirmed', 'dismissed')),
    reviewer       text,
    note           text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    resolved_at    timestamptz,
    CHECK ((status = 'resolved') = (decision IS NOT NULL))
);
-- Listing is per tenant, newest first, optionally by status; keyset pagination on (created_at, id).
CREATE INDEX IF NOT EXISTS guard_reviews_tenant_created ON guard_reviews (tenant_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS guard_reviews_tenant_status_created
    ON guard_reviews (tenant_id, status, created_at DESC, id DESC);
