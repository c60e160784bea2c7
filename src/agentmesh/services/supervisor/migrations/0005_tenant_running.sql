-- Per-tenant concurrency (AGENTMESH_TENANT_MAX_CONCURRENT_RUNS): a run start counts the tenant's runs that are
-- running under a live lease on any supervisor; this keeps that count to the tenant's few running rows.
CREATE INDEX IF NOT EXISTS runs_tenant_running ON runs (tenant_id, lease_expires_at) WHERE status = 'running';
