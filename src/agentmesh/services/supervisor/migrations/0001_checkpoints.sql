-- Threads, runs, steps and messages. Every row carries its tenant, so every query can be scoped by it.
-- A step row holds only that step's delta (its result), never the whole history again.
CREATE TABLE IF NOT EXISTS threads (
    id          uuid PRIMARY KEY,
    tenant_id   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS threads_tenant ON threads (tenant_id, created_at);

CREATE TABLE IF NOT EXISTS runs (
    id                uuid PRIMARY KEY,
    thread_id         uuid NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    tenant_id         text NOT NULL,
    status            text NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
    input             text NOT NULL,            -- the user's message as the guard let it through (redacted)
    history           jsonb NOT NULL DEFAULT '[]',  -- earlier thread messages this run saw, fixed at start
    next_seq          bigint NOT NULL DEFAULT 0,
    iterations        int NOT NULL DEFAULT 0,
    input_tokens      bigint NOT NULL DEFAULT 0,
    output_tokens     bigint NOT NULL DEFAULT 0,
    llm_calls         int NOT NULL DEFAULT 0,
    cost_usd          double precision NOT NULL DEFAULT 0,
    final             jsonb,
    error             jsonb,
    lease_owner       text,
    lease_expires_at  timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS runs_thread ON runs (thread_id, created_at);
CREATE INDEX IF NOT EXISTS runs_running ON runs (lease_expires_at) WHERE status = 'running';

CREATE TABLE IF NOT EXISTS steps (
    run_id         uuid NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    idx            int NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('route', 'agent', 'guard')),
    agent          text NOT NULL,
    result         jsonb NOT NULL,
    input_tokens   int NOT NULL DEFAULT 0,
    output_tokens  int NOT NULL DEFAULT 0,
    llm_calls      int NOT NULL DEFAULT 0,
    cost_usd       double precision NOT NULL DEFAULT 0,
    duration_ms    int NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, idx)
);

CREATE TABLE IF NOT EXISTS messages (
    id          bigserial PRIMARY KEY,
    thread_id   uuid NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    run_id      uuid,
    role        text NOT NULL CHECK (role IN ('user', 'assistant')),
    content     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS messages_thread ON messages (thread_id, id);
