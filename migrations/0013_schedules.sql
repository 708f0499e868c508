-- Cron schedules: per scheduled pipeline, the fire time up to which every fire is handled
-- (run, or skipped by its catch-up policy), and one row per fire that started a run, unique
-- per (pipeline, fire time): however many replicas and restarts, a fire starts one run.
CREATE TABLE schedules (
    pipeline_id   text        PRIMARY KEY,
    cron          text        NOT NULL,
    timezone      text        NOT NULL,
    handled_until timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE schedule_fires (
    pipeline_id text        NOT NULL,
    fire_at     timestamptz NOT NULL,
    run_id      text        NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    fired_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline_id, fire_at)
);
