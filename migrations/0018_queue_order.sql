-- A claim walks the head of the queue instead of sorting all of it: the queue's order (the
-- run's creation, the task's priority, its time queued) is kept in the queued task's own row,
-- with a partial index in that order. A run's created_at never changes. Tasks that wait for
-- data or checks (gated) are read apart, so that a long line of them never hides a ready task.
ALTER TABLE task_instances ADD COLUMN run_created_at timestamptz;
ALTER TABLE task_instances ADD COLUMN gated boolean NOT NULL DEFAULT false;
UPDATE task_instances AS t SET run_created_at = r.created_at FROM runs AS r
WHERE r.run_id = t.run_id;
UPDATE task_instances AS t SET gated = true
WHERE EXISTS (SELECT 1 FROM task_waits AS w WHERE w.run_id = t.run_id AND w.task_id = t.task_id)
   OR EXISTS (SELECT 1 FROM task_checks AS c WHERE c.run_id = t.run_id AND c.task_id = t.task_id);
ALTER TABLE task_instances ALTER COLUMN run_created_at SET NOT NULL;
CREATE INDEX task_instances_queue
    ON task_instances (remote, gated, run_created_at, priority DESC, queued_at, run_id, task_id)
    WHERE state = 'queued';
DROP INDEX task_instances_queued;
