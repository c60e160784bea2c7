-- Durable runs: every event a client can see is recorded (a serialized agentmesh.v1.RunEvent), in the same
-- statement as the checkpoint it belongs to, so WatchRun can replay a run from any seq and follow it live
-- across supervisors; an insert notifies every supervisor (LISTEN agentmesh_run_events, payload: run id).
CREATE TABLE IF NOT EXISTS run_events (
    run_id  uuid NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    seq     bigint NOT NULL,
    body    bytea NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE OR REPLACE FUNCTION agentmesh_notify_run_event() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('agentmesh_run_events', NEW.run_id::text);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS run_events_notify ON run_events;
CREATE TRIGGER run_events_notify AFTER INSERT ON run_events FOR EACH ROW EXECUTE FUNCTION agentmesh_notify_run_event();

-- CancelRun: a run can end cancelled; the flag stops a takeover from continuing a run whose cancel is pending.
ALTER TABLE runs DROP CONSTRAINT IF EXISTS runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check CHECK (status IN ('running', 'completed', 'failed', 'cancelled'));
ALTER TABLE runs ADD COLUMN IF NOT EXISTS cancel_requested boolean NOT NULL DEFAULT false;
