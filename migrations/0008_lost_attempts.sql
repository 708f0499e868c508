-- Attempts lost through no fault of the task (its service, worker or supervisor went away, or
-- the service stopped) are retried without using the task's retries: they are counted apart,
-- up to a bound of their own (the max_lost_attempts setting).
ALTER TABLE task_instances
    ADD COLUMN lost_attempts integer NOT NULL DEFAULT 0 CHECK (lost_attempts >= 0);
