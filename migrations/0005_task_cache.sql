-- Successful attempts of tasks with `cache: true`, by cache key: the spec version, the
-- rendered command and the versions of the task's input partitions, hashed.
CREATE TABLE task_cache (
    cache_key   text        PRIMARY KEY,
    pipeline_id text        NOT NULL,
    task_id     text        NOT NULL,
    run_id      text        NOT NULL,
    attempt     integer     NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
