-- A remote attempt is dispatched (task.requested) but runs only once a worker picks it up:
-- until then it holds no lease, only a time by which a worker must pick it up. A request
-- nobody picked up is requested again, for the same attempt; workers discard a request
-- past its pickup time, so the two never both run.
ALTER TABLE task_instances ADD COLUMN pickup_by timestamptz;

CREATE INDEX task_instances_pickup ON task_instances (pickup_by)
    WHERE state = 'running' AND pickup_by IS NOT NULL;
