-- Data dependencies: a task with wait_for datasets is claimable only once every partition it
-- waits for has been announced (dataset.ready) or produced by a task's output.

CREATE TABLE task_waits (
    run_id    text NOT NULL,
    task_id   text NOT NULL,
    dataset   text NOT NULL,
    partition text NOT NULL,
    PRIMARY KEY (run_id, task_id, dataset, partition),
    FOREIGN KEY (run_id, task_id) REFERENCES task_instances (run_id, task_id) ON DELETE CASCADE
);
