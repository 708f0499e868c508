-- The dashboard's heat map reads a pipeline's newest batch dates, newest run of each first:
-- an index in that order lets it stop after the dates it shows, however long the history.
CREATE INDEX runs_by_pipeline_and_batch_date
    ON runs (pipeline_id, batch_date DESC, created_at DESC);
