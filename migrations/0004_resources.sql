-- What each task reserves while it runs, so claims can respect node capacity and pools.
ALTER TABLE task_instances
    ADD COLUMN cpu_cores real    NOT NULL DEFAULT 1 CHECK (cpu_cores > 0),
    ADD COLUMN memory_mb integer NOT NULL DEFAULT 256 CHECK (memory_mb > 0),
    ADD COLUMN pool      text,
    ADD COLUMN priority  integer NOT NULL DEFAULT 0;  -- higher first, within a run's age

CREATE INDEX task_instances_running_pool ON task_instances (pool) WHERE state = 'running';
