-- Tasks run by remote workers (executor: remote) are dispatched through Kafka, not claimed
-- by the service's local executor.
ALTER TABLE task_instances ADD COLUMN remote boolean NOT NULL DEFAULT false;
