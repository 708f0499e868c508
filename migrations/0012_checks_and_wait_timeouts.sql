-- Waits that end: a dataset wait may time out (counted from when its task was queued), and
-- polled checks (a command, a path, a SQL query, a URL) keep their state here: when the next
-- poke is due, how many were made, consecutive errors, the last answer, and when it was ready.
ALTER TABLE task_waits ADD COLUMN timeout_seconds double precision CHECK (timeout_seconds > 0);

CREATE TABLE task_checks (
    run_id           text             NOT NULL,
    task_id          text             NOT NULL,
    position         integer          NOT NULL,   -- its place in the task's wait_for
    probe            jsonb            NOT NULL,   -- rendered for the run: kind and texts
    poke_seconds     double precision NOT NULL CHECK (poke_seconds > 0),
    poke_backoff     double precision NOT NULL DEFAULT 1 CHECK (poke_backoff >= 1),
    max_poke_seconds double precision NOT NULL CHECK (max_poke_seconds > 0),
    timeout_seconds  double precision NOT NULL CHECK (timeout_seconds > 0),
    next_poke_at     timestamptz,                 -- NULL: as soon as its task is queued
    pokes            integer          NOT NULL DEFAULT 0,
    errors           integer          NOT NULL DEFAULT 0,   -- in a row
    last_result      text,
    ready_at         timestamptz,
    PRIMARY KEY (run_id, task_id, position),
    FOREIGN KEY (run_id, task_id) REFERENCES task_instances (run_id, task_id) ON DELETE CASCADE
);
CREATE INDEX task_checks_due ON task_checks (next_poke_at) WHERE ready_at IS NULL;
