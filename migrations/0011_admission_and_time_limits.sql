-- Run concurrency: a new run stays queued until it is admitted — while its pipeline has fewer
-- than max_active_runs running runs and no other run of the same batch date is running.
-- Admission takes queued runs oldest batch date first.
CREATE INDEX runs_queued_by_pipeline ON runs (pipeline_id, batch_date, created_at)
    WHERE state = 'queued';
CREATE INDEX runs_running_by_pipeline ON runs (pipeline_id, batch_date)
    WHERE state = 'running';

-- Time limits: each task instance's timeout (its own, or the default_task_timeout setting;
-- NULL: none), the longest an attempt may hold its lease (cleanup + timeout + grace +
-- rollback), and the attempt's deadline: a lease is never renewed past it.
ALTER TABLE task_instances
    ADD COLUMN time_limit_seconds double precision CHECK (time_limit_seconds > 0),
    ADD COLUMN hold_seconds       double precision CHECK (hold_seconds > 0),
    ADD COLUMN attempt_deadline   timestamptz;
