-- Double texting and human in the loop: a run can wait for the runs before it on its thread (`queued`, no lease)
-- or for a person's answer (`paused`, no lease: neither a takeover nor Resume continues it). `pending_input` is
-- what the paused run asks (its input_required event, as JSON); `approvals` the answers given, by step index.
ALTER TABLE runs DROP CONSTRAINT IF EXISTS runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check
    CHECK (status IN ('queued', 'running', 'paused', 'completed', 'failed', 'cancelled'));
ALTER TABLE runs ADD COLUMN IF NOT EXISTS pending_input jsonb;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS approvals jsonb NOT NULL DEFAULT '{}'::jsonb;
-- The queue's head on a thread, and the sweep's look for heads whose thread is free.
CREATE INDEX IF NOT EXISTS runs_queued ON runs (thread_id, created_at) WHERE status = 'queued';
