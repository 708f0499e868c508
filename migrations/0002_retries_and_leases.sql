-- Timers that must survive a restart: when a task up for retry is queued again, and until
-- when a running attempt's worker is presumed alive. Plus a record of ignored events.

ALTER TABLE task_instances
    ADD COLUMN retry_at         timestamptz,  -- set while up_for_retry
    ADD COLUMN lease_expires_at timestamptz;  -- set while running, renewed by heartbeats

CREATE INDEX task_instances_retry_due ON task_instances (retry_at) WHERE state = 'up_for_retry';
CREATE INDEX task_instances_lease ON task_instances (lease_expires_at) WHERE state = 'running';

-- Events that were valid but changed nothing (a stale attempt, an ended run), and why.
CREATE TABLE ignored_events (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    source     text        NOT NULL,
    event_id   text        NOT NULL,
    event_type text        NOT NULL,
    run_id     text,
    task_id    text,
    reason     text        NOT NULL
);
CREATE INDEX ignored_events_by_run ON ignored_events (run_id, id);
