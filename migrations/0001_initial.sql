-- Tributary's first schema: pipelines as deployed, runs, task instances and their attempts,
-- the transition log, dataset partitions, processed events and the outbox.
-- State names are enforced here and defined in service/engine/states.py (a test keeps them equal).

CREATE TABLE pipeline_versions (
    pipeline_id   text        NOT NULL,
    spec_hash     text        NOT NULL,          -- sha256 of the canonical spec JSON
    spec          jsonb       NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline_id, spec_hash)
);

CREATE TABLE runs (
    run_id       text        PRIMARY KEY,        -- 20261121-142233-8a3f: UTC time + random
    pipeline_id  text        NOT NULL,
    spec_hash    text        NOT NULL,
    batch_date   date        NOT NULL,           -- the logical partition handed to every task
    trigger_key  text        NOT NULL,           -- what made this run; one run per key
    state        text        NOT NULL CHECK (state IN ('queued', 'running', 'success', 'failed', 'cancelled')),
    params       jsonb       NOT NULL DEFAULT '{}',
    trace_id     text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    ended_at     timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (pipeline_id, trigger_key),
    FOREIGN KEY (pipeline_id, spec_hash) REFERENCES pipeline_versions (pipeline_id, spec_hash)
);
CREATE INDEX runs_by_pipeline_and_time ON runs (pipeline_id, created_at DESC);
CREATE INDEX runs_by_time ON runs (created_at DESC);
CREATE INDEX runs_active ON runs (state) WHERE state IN ('queued', 'running');

CREATE TABLE task_instances (
    run_id        text        NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    task_id       text        NOT NULL,
    state         text        NOT NULL CHECK (state IN (
                      'pending', 'queued', 'running', 'success', 'failed', 'skipped',
                      'up_for_retry', 'upstream_failed', 'timed_out', 'cancelled')),
    attempt       integer     NOT NULL DEFAULT 0 CHECK (attempt >= 0),  -- 0 until first started
    worker_id     text,                          -- who runs the current attempt
    queued_at     timestamptz,
    started_at    timestamptz,
    ended_at      timestamptz,
    exit_code     integer,
    error_snippet text,                          -- last 200 characters of the error output
    stderr_tail   text,                          -- last 20 lines of stderr
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, task_id)
);
CREATE INDEX task_instances_queued ON task_instances (queued_at) WHERE state = 'queued';

-- One row per finished attempt: the archive behind history views and "succeeded once" checks.
CREATE TABLE task_attempts (
    run_id        text        NOT NULL,
    task_id       text        NOT NULL,
    attempt       integer     NOT NULL,
    state         text        NOT NULL,
    worker_id     text,
    started_at    timestamptz,
    ended_at      timestamptz NOT NULL,
    exit_code     integer,
    error_snippet text,
    stderr_tail   text,
    PRIMARY KEY (run_id, task_id, attempt),
    FOREIGN KEY (run_id, task_id) REFERENCES task_instances (run_id, task_id) ON DELETE CASCADE
);

-- Append-only: every state change of a run or a task, written with the change itself.
CREATE TABLE transitions (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    run_id      text        NOT NULL,
    task_id     text,                            -- NULL for the run's own state
    attempt     integer,
    from_state  text,                            -- NULL when the row is created
    to_state    text        NOT NULL,
    reason      text        NOT NULL,
    actor       text        NOT NULL             -- which instance or operator made the change
);
CREATE INDEX transitions_by_run ON transitions (run_id, id);

-- Every announced version of every dataset partition.
CREATE TABLE dataset_partitions (
    dataset     text        NOT NULL,
    partition   text        NOT NULL,
    version     text        NOT NULL,
    producer    text,
    event_id    text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dataset, partition, version)
);

-- Idempotent consumption: an event's (source, id) is inserted with its effects.
CREATE TABLE processed_events (
    source       text        NOT NULL,
    event_id     text        NOT NULL,
    event_type   text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, event_id)
);

-- Events to publish, written in the transaction that decided them; the relay sends them.
CREATE TABLE outbox (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id   text        NOT NULL UNIQUE,
    topic      text        NOT NULL,
    key        text        NOT NULL,
    payload    bytea       NOT NULL,             -- the CloudEvent, serialized once
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
