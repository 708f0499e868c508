-- SLA deadlines: when a run must have succeeded (its batch date's 00:00 UTC + the pipeline's
-- sla.deadline), and when the timer found it late (once).
ALTER TABLE runs
    ADD COLUMN deadline_at        timestamptz,
    ADD COLUMN deadline_missed_at timestamptz;

CREATE INDEX runs_deadline_due ON runs (deadline_at)
    WHERE deadline_missed_at IS NULL AND state IN ('queued', 'running');
