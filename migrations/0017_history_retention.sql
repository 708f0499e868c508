-- Retention (history_retention_days): the append-only logs are pruned oldest first, in small
-- batches. BRIN indexes on their times: tiny, nearly free to keep up on insert (rows arrive in
-- time order), and they find the old rows without reading the new ones.
CREATE INDEX transitions_by_time ON transitions USING brin (at);
CREATE INDEX processed_events_by_time ON processed_events USING brin (processed_at);
CREATE INDEX outbox_by_time ON outbox USING brin (created_at);
CREATE INDEX ignored_events_by_time ON ignored_events USING brin (at);
