-- Per-tenant daily budgets (issue 8). Spend is summed from runs created today (UTC), so the sum needs an
-- index that starts with the tenant and orders by creation time: one index range scan per check.
CREATE INDEX IF NOT EXISTS runs_tenant_day ON runs (tenant_id, created_at);

-- Overrides of the AGENTMESH_TENANT_DAILY_* defaults; a NULL column keeps the default, 0 means no limit.
CREATE TABLE IF NOT EXISTS tenant_budgets (
    tenant_id     text PRIMARY KEY,
    daily_tokens  bigint CHECK (daily_tokens >= 0),
    daily_usd     double precision CHECK (daily_usd >= 0),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
