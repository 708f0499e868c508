-- Operators act on runs and pipelines. A rerun task's retry budget starts afresh at its
-- current attempt number (attempt numbers go on); every command, applied or refused, is kept
-- in the audit log (who, what, when, why); a paused pipeline's triggers and schedules are
-- recorded, but its runs wait, queued, until it is unpaused.
ALTER TABLE task_instances
    ADD COLUMN attempt_base integer NOT NULL DEFAULT 0 CHECK (attempt_base >= 0);

CREATE TABLE audit_log (
    id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    event_id  text        NOT NULL,          -- the command's idempotency key
    actor     text        NOT NULL,          -- who: the API token's name, or the tool's user
    command   text        NOT NULL,
    run_id    text,
    task_id   text,
    pipeline_id text,
    reason    text        NOT NULL DEFAULT '',
    outcome   text        NOT NULL CHECK (outcome IN ('applied', 'refused')),
    detail    text        NOT NULL DEFAULT ''  -- why it was refused
);
CREATE INDEX audit_log_by_run ON audit_log (run_id, id);
CREATE INDEX audit_log_by_time ON audit_log (at DESC);

CREATE TABLE pipeline_controls (
    pipeline_id text        PRIMARY KEY,
    paused      boolean     NOT NULL DEFAULT false,
    changed_by  text        NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    reason      text        NOT NULL DEFAULT ''
);
