-- What a task reported of its work (row counts, error rates, bytes written, a checksum): a
-- JSON object of at most 64 KiB, written to TRIBUTARY_RESULT_FILE or returned by a Python
-- task. Kept with each attempt; the task instance holds its latest attempt's.
ALTER TABLE task_instances ADD COLUMN result jsonb;
ALTER TABLE task_attempts ADD COLUMN result jsonb;

-- Per declared output of a successful attempt, what produced it: the attempt, the versions of
-- the inputs it read, the run's params, how long it took, its exit code and its result.
CREATE TABLE output_records (
    run_id           text             NOT NULL,
    task_id          text             NOT NULL,
    attempt          integer          NOT NULL,
    dataset          text             NOT NULL,
    partition        text             NOT NULL,
    version          text             NOT NULL,
    uri              text             NOT NULL,
    input_versions   jsonb            NOT NULL DEFAULT '[]',
    params           jsonb            NOT NULL DEFAULT '{}',
    duration_seconds double precision,
    exit_code        integer,
    result           jsonb,
    recorded_at      timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, task_id, attempt, dataset)
);
CREATE INDEX output_records_by_partition ON output_records (dataset, partition);

-- The failed-task follow-up list (tributary runs failed --since 1d) reads the newest failures.
CREATE INDEX task_instances_failed_by_time ON task_instances (ended_at)
    WHERE state IN ('failed', 'timed_out');
