-- Every query Tributary sends to PostgreSQL, by name. Loaded once by service/store/queries.py;
-- tests/integration/test_queries.py checks that each one parses and is used.
-- Arrays ($n::text[]) carry batches: one round trip for many rows.


-- name: create_migrations_table
-- The ledger of applied migrations (runs under the migration lock).
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: lock_migrations
-- $1 lock key. Held until the migrating transaction ends; a second process waits here.
SELECT pg_advisory_xact_lock($1);

-- name: applied_migrations
SELECT version, name, checksum FROM schema_migrations ORDER BY version;

-- name: record_migration
-- $1 version, $2 name, $3 checksum.
INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3);


-- name: save_pipeline_version
-- $1 pipeline id, $2 spec hash, $3 spec JSON. A version is stored once and never changes.
INSERT INTO pipeline_versions (pipeline_id, spec_hash, spec)
VALUES ($1, $2, $3)
ON CONFLICT (pipeline_id, spec_hash) DO NOTHING;

-- name: pipeline_version_spec
-- $1 pipeline id, $2 spec hash.
SELECT spec FROM pipeline_versions WHERE pipeline_id = $1 AND spec_hash = $2;


-- name: mark_events_and_lock_runs
-- $1 sources, $2 event ids, $3 types: each event recorded as applied; $4 run ids: locked (in
-- run-id order, like lock_runs) once the events are recorded, so a transaction applying the
-- same event at the same time is waited for before any run is. Returns a row (source,
-- event_id) per event not seen before — the rest are duplicates, applied by an earlier
-- transaction — and a row (run columns) per run locked, as committed.
WITH fresh AS (
    INSERT INTO processed_events (source, event_id, event_type)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
    ON CONFLICT (source, event_id) DO NOTHING
    RETURNING source, event_id
), locked AS (
    SELECT run_id, pipeline_id, spec_hash, batch_date, state, trace_id, params, started_at
    FROM runs
    WHERE run_id = ANY($4::text[])
      AND (SELECT count(*) FROM fresh) >= 0  -- after the events are recorded
    ORDER BY run_id
    FOR UPDATE
)
SELECT source, event_id, NULL AS run_id, NULL AS pipeline_id, NULL AS spec_hash,
       NULL::date AS batch_date, NULL AS state, NULL AS trace_id, NULL::jsonb AS params,
       NULL::timestamptz AS started_at
FROM fresh
UNION ALL
SELECT NULL, NULL, run_id, pipeline_id, spec_hash, batch_date, state, trace_id, params,
       started_at
FROM locked;

-- name: record_dataset_partitions
-- $1 datasets, $2 partitions, $3 versions, $4 producers, $5 event ids (parallel arrays): each
-- announced version of a partition, once.
INSERT INTO dataset_partitions (dataset, partition, version, producer, event_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
ON CONFLICT (dataset, partition, version) DO NOTHING;

-- name: ready_datasets
-- $1 dataset names, $2 their partitions (parallel arrays): which pairs have been announced.
SELECT DISTINCT d.dataset
FROM dataset_partitions AS d
JOIN unnest($1::text[], $2::text[]) AS wanted(dataset, partition)
  ON d.dataset = wanted.dataset AND d.partition = wanted.partition;


-- name: create_runs
-- New runs, queued, with all their tasks pending, in one statement: $1 run ids, $2 pipelines,
-- $3 spec hashes, $4 batch dates, $5 trigger keys, $6 params, $7 trace ids, $8 SLA deadlines
-- (NULL: none); their tasks, each named by its run: $9 run ids, $10 task ids, $11 cpu cores,
-- $12 memory MB, $13 pools, $14 priorities, $15 remote, $16 time limits, $17 hold limits
-- (seconds, NULL: none), $18 whether it waits for data or checks; the data they wait for:
-- $19 run ids, $20 task ids, $21 datasets, $22 partitions, $23 timeouts (seconds or NULL);
-- the checks they poll: $24 run ids, $25 task ids, $26 positions, $27 probes (JSON), $28 poke
-- intervals, $29 backoffs, $30 longest intervals, $31 timeouts (parallel arrays each).
-- Returns the runs created; one not returned was not written, nor were its tasks: its run id,
-- or a run for the same (pipeline, trigger key), exists.
WITH new_runs AS (
    INSERT INTO runs (run_id, pipeline_id, spec_hash, batch_date, trigger_key, state, params,
                      trace_id, deadline_at)
    SELECT n.run_id, n.pipeline_id, n.spec_hash, n.batch_date, n.trigger_key, 'queued',
           n.params, n.trace_id, n.deadline_at
    FROM unnest($1::text[], $2::text[], $3::text[], $4::date[], $5::text[], $6::jsonb[],
                $7::text[], $8::timestamptz[])
        AS n(run_id, pipeline_id, spec_hash, batch_date, trigger_key, params, trace_id,
             deadline_at)
    ON CONFLICT DO NOTHING
    RETURNING run_id, created_at
), tasks AS (
    INSERT INTO task_instances (run_id, task_id, state, cpu_cores, memory_mb, pool, priority,
                                remote, time_limit_seconds, hold_seconds, gated, run_created_at)
    SELECT r.run_id, x.task_id, 'pending', x.cpu_cores, x.memory_mb, x.pool, x.priority,
           x.remote, x.time_limit, x.hold, x.gated, r.created_at
    FROM unnest($9::text[], $10::text[], $11::real[], $12::int[], $13::text[], $14::int[],
                $15::boolean[], $16::float8[], $17::float8[], $18::boolean[])
        AS x(run_id, task_id, cpu_cores, memory_mb, pool, priority, remote, time_limit, hold,
             gated)
    JOIN new_runs AS r ON r.run_id = x.run_id
), waits AS (
    INSERT INTO task_waits (run_id, task_id, dataset, partition, timeout_seconds)
    SELECT r.run_id, w.task_id, w.dataset, w.partition, w.timeout
    FROM unnest($19::text[], $20::text[], $21::text[], $22::text[], $23::float8[])
        AS w(run_id, task_id, dataset, partition, timeout)
    JOIN new_runs AS r ON r.run_id = w.run_id
    ON CONFLICT DO NOTHING
), checks AS (
    INSERT INTO task_checks (run_id, task_id, position, probe, poke_seconds, poke_backoff,
                             max_poke_seconds, timeout_seconds)
    SELECT r.run_id, c.task_id, c.position, c.probe, c.poke, c.backoff, c.max_poke, c.timeout
    FROM unnest($24::text[], $25::text[], $26::int[], $27::jsonb[], $28::float8[],
                $29::float8[], $30::float8[], $31::float8[])
        AS c(run_id, task_id, position, probe, poke, backoff, max_poke, timeout)
    JOIN new_runs AS r ON r.run_id = c.run_id
)
SELECT run_id FROM new_runs;

-- name: lock_runs
-- $1 run ids. Serializes every change to these runs, across replicas; always locked in
-- run id order, so two transactions never wait on each other in a circle.
SELECT run_id, pipeline_id, spec_hash, batch_date, state, trace_id, params, started_at
FROM runs WHERE run_id = ANY($1::text[])
ORDER BY run_id
FOR UPDATE;

-- name: task_states
-- $1 run ids.
SELECT run_id, task_id, state, attempt, lost_attempts, attempt_base, result
FROM task_instances WHERE run_id = ANY($1::text[]);

-- name: move_runs
-- $1 run ids, $2 expected states, $3 new states. Returns the runs moved; a missing one was
-- not in its expected state.
UPDATE runs AS r
SET state = m.to_state,
    updated_at = now(),
    started_at = CASE WHEN m.to_state = 'running' THEN coalesce(r.started_at, now())
                      ELSE r.started_at END,
    ended_at = CASE WHEN m.to_state IN ('success', 'failed', 'cancelled') THEN now()
                    WHEN m.to_state = 'running' THEN NULL  -- active again (an operator)
                    ELSE r.ended_at END
FROM unnest($1::text[], $2::text[], $3::text[]) AS m(run_id, from_state, to_state)
WHERE r.run_id = m.run_id AND r.state = m.from_state
RETURNING r.run_id;

-- name: write_task_changes
-- A batch's task moves and its attempts' outcomes, in one statement. Moves: $1 run ids, $2
-- task ids, $3 expected states, $4 new states, $5 retry times, $6 whether the move retries a
-- lost attempt, $7 whether an operator reruns it (its budgets start afresh). Outcomes: $8 run
-- ids, $9 task ids, $10 attempts, $11 exit codes, $12 error snippets, $13 stderr tails, $14
-- end times, $15 results (JSON text or NULL), $16 when each process started as its executor
-- says (NULL: the claim's time stays) (parallel arrays each).
-- Each task row changes once: its move (guarded by its expected state) and the outcome of its
-- current attempt (one of an older attempt is dropped), stored on the instance and archived
-- with the state it moved to. Returns the rows moved; a missing one was not in its expected
-- state, and nothing of it was written.
WITH moves AS (
    SELECT *
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                $6::boolean[], $7::boolean[])
        AS m(run_id, task_id, from_state, to_state, retry_at, lost, reset)
), outcomes AS (
    SELECT o.*
    FROM unnest($8::text[], $9::text[], $10::int[], $11::int[], $12::text[], $13::text[],
                $14::timestamptz[], $15::text[], $16::timestamptz[])
        AS o(run_id, task_id, attempt, exit_code, error_snippet, stderr_tail, ended_at, result,
             started_at)
    JOIN task_instances AS t
      ON t.run_id = o.run_id AND t.task_id = o.task_id AND t.attempt = o.attempt
), changes AS (
    SELECT coalesce(m.run_id, o.run_id) AS run_id, coalesce(m.task_id, o.task_id) AS task_id,
           m.run_id IS NOT NULL AS moved, m.from_state, m.to_state, m.retry_at, m.lost, m.reset,
           o.run_id IS NOT NULL AS ended, o.exit_code, o.error_snippet, o.stderr_tail,
           o.ended_at, o.result, o.started_at
    FROM moves AS m
    FULL JOIN outcomes AS o ON o.run_id = m.run_id AND o.task_id = m.task_id
), changed AS (
    UPDATE task_instances AS t
    SET state = CASE WHEN c.moved THEN c.to_state ELSE t.state END,
        retry_at = CASE WHEN c.moved THEN c.retry_at ELSE t.retry_at END,
        lost_attempts = CASE WHEN NOT c.moved THEN t.lost_attempts
                             WHEN c.reset THEN 0
                             ELSE t.lost_attempts + c.lost::int END,
        attempt_base = CASE WHEN c.moved AND c.reset THEN t.attempt ELSE t.attempt_base END,
        queued_at = CASE WHEN c.moved AND c.to_state = 'queued' THEN now() ELSE t.queued_at END,
        ended_at = CASE WHEN c.ended THEN c.ended_at
                        WHEN NOT c.moved THEN t.ended_at
                        WHEN c.to_state IN ('success', 'failed', 'skipped', 'upstream_failed',
                                            'timed_out', 'cancelled')
                        THEN CASE WHEN c.reset THEN now() ELSE coalesce(t.ended_at, now()) END
                        WHEN c.reset THEN NULL
                        ELSE t.ended_at END,
        exit_code = CASE WHEN c.ended THEN c.exit_code ELSE t.exit_code END,
        error_snippet = CASE WHEN c.ended THEN c.error_snippet ELSE t.error_snippet END,
        stderr_tail = CASE WHEN c.ended THEN c.stderr_tail ELSE t.stderr_tail END,
        result = CASE WHEN c.ended THEN c.result::jsonb ELSE t.result END,
        started_at = CASE WHEN c.ended THEN coalesce(c.started_at, t.started_at)
                          ELSE t.started_at END,
        updated_at = now()
    FROM changes AS c
    WHERE t.run_id = c.run_id AND t.task_id = c.task_id
      AND (NOT c.moved OR t.state = c.from_state)
    RETURNING t.run_id, t.task_id, c.moved, c.ended, t.attempt, t.state, t.worker_id,
              t.started_at, t.ended_at, t.exit_code, t.error_snippet, t.stderr_tail, t.result
), archived AS (
    INSERT INTO task_attempts (run_id, task_id, attempt, state, worker_id, started_at, ended_at,
                               exit_code, error_snippet, stderr_tail, result)
    SELECT run_id, task_id, attempt, state, worker_id, started_at, ended_at, exit_code,
           error_snippet, stderr_tail, result
    FROM changed WHERE ended
    ON CONFLICT (run_id, task_id, attempt) DO NOTHING
)
SELECT run_id, task_id FROM changed WHERE moved;

-- name: plan_generically
-- For the rest of the transaction: plan each prepared statement once, not at every call.
-- claim_queued costs more to plan than to run (0.8 ms against 0.7 ms with 6,000 tasks
-- queued), and its generic plan reads the queue's head in index order whatever it holds; a
-- small batch's statements too (a hop's). A large batch's keep being planned for their rows.
SET LOCAL plan_cache_mode = force_generic_plan;

-- name: remote_tasks_queued
-- Whether any task for remote workers waits in the queue (the dispatcher's look before it
-- opens a claim's transaction).
SELECT EXISTS (SELECT 1 FROM task_instances WHERE state = 'queued' AND remote);

-- name: claim_queued
-- $1 how many at most, $2 free cpu cores, $3 free memory MB on this node (NULL: no limit), $4
-- pool names, $5 pool sizes (parallel arrays; a pool not listed has no limit), $6 run ids and
-- $7 task ids to pass over (chosen by an earlier round and left), $8 remote tasks (true: for
-- dispatch to workers) or local ones, $9 how far down the queue to look, $10 worker id, $11
-- lease in seconds, $12 NULL for local attempts, or for remote ones the seconds a worker has
-- to pick each up (no lease until then: its first heartbeat starts it).
-- One statement chooses, locks and claims. The choice: in queue order (oldest run first, then
-- task priority), the longest prefix that fits the node: a big task at the head is never
-- overtaken by a stream of small ones. A task whose pool is full waits without holding up
-- others. Waiting for data or a check keeps a task out. The head is read in the order of the
-- task_instances_queue index, $9 rows at most, so a claim costs the same with ten thousand
-- tasks queued as with ten; tasks gated by data or checks are read apart (only those ready),
-- so a line of them never hides a ready task.
-- Then the chosen tasks' runs are locked in run-id order, as every writer of a run's events
-- locks them, so each run's status events commit in the order they are written (the store
-- makes a variant that passes over runs another transaction holds: SKIP LOCKED); task rows
-- another replica is claiming are skipped, never waited for. A lock waited for returns the
-- row as committed meanwhile (its state, its version), and every move is checked again on it.
-- Every chosen task comes back in queue order; attempt is NULL for one that was not claimed.
WITH pool_free AS (
    SELECT p.name, p.size - count(t.task_id) AS free
    FROM unnest($4::text[], $5::int[]) AS p(name, size)
    LEFT JOIN task_instances AS t ON t.state = 'running' AND t.pool = p.name
    GROUP BY p.name, p.size
), free_head AS MATERIALIZED (  -- tasks that wait for nothing, in index order
    SELECT t.run_id, t.task_id, t.cpu_cores, t.memory_mb, t.pool,
           t.run_created_at AS created_at, t.priority, t.queued_at
    FROM task_instances AS t
    WHERE t.state = 'queued' AND t.remote = $8 AND NOT t.gated
      AND (t.pool IS NULL OR t.pool NOT IN (SELECT name FROM pool_free WHERE free <= 0))
      AND NOT EXISTS (
          SELECT 1 FROM unnest($6::text[], $7::text[]) AS x(run_id, task_id)
          WHERE x.run_id = t.run_id AND x.task_id = t.task_id)
    ORDER BY t.run_created_at, t.priority DESC, t.queued_at, t.run_id, t.task_id
    LIMIT $9
), gated_head AS MATERIALIZED (  -- tasks that wait for data or checks: those whose wait is over
    SELECT t.run_id, t.task_id, t.cpu_cores, t.memory_mb, t.pool,
           t.run_created_at AS created_at, t.priority, t.queued_at
    FROM task_instances AS t
    WHERE t.state = 'queued' AND t.remote = $8 AND t.gated
      AND (t.pool IS NULL OR t.pool NOT IN (SELECT name FROM pool_free WHERE free <= 0))
      AND NOT EXISTS (  -- every partition it waits for is there
          SELECT 1 FROM task_waits AS w
          WHERE w.run_id = t.run_id AND w.task_id = t.task_id
            AND NOT EXISTS (SELECT 1 FROM dataset_partitions AS d
                            WHERE d.dataset = w.dataset AND d.partition = w.partition))
      AND NOT EXISTS (  -- every check it polls said ready
          SELECT 1 FROM task_checks AS c
          WHERE c.run_id = t.run_id AND c.task_id = t.task_id AND c.ready_at IS NULL)
      AND NOT EXISTS (
          SELECT 1 FROM unnest($6::text[], $7::text[]) AS x(run_id, task_id)
          WHERE x.run_id = t.run_id AND x.task_id = t.task_id)
    ORDER BY t.run_created_at, t.priority DESC, t.queued_at, t.run_id, t.task_id
    LIMIT $9
), queued AS (
    SELECT h.* FROM (SELECT * FROM free_head UNION ALL SELECT * FROM gated_head) AS h
    -- a subplan per row (an index probe), never a join that would read every run
    WHERE (SELECT r.state FROM runs AS r WHERE r.run_id = h.run_id) = 'running'
    ORDER BY h.created_at, h.priority DESC, h.queued_at, h.run_id, h.task_id
    LIMIT $9
), pooled AS (
    SELECT q.*, row_number() OVER (PARTITION BY q.pool
                                   ORDER BY q.created_at, q.priority DESC, q.queued_at) AS n
    FROM queued AS q
), eligible AS (
    SELECT p.*
    FROM pooled AS p LEFT JOIN pool_free AS f ON f.name = p.pool
    WHERE p.pool IS NULL OR f.name IS NULL OR p.n <= f.free
), fitted AS (
    SELECT e.run_id, e.task_id,
           sum(e.cpu_cores) OVER w AS cpu, sum(e.memory_mb) OVER w AS memory,
           row_number() OVER w AS position
    FROM eligible AS e
    WINDOW w AS (ORDER BY e.created_at, e.priority DESC, e.queued_at, e.run_id, e.task_id)
), chosen AS MATERIALIZED (
    SELECT run_id, task_id, position FROM fitted
    WHERE ($2::real IS NULL OR cpu <= $2) AND ($3::bigint IS NULL OR memory <= $3)
      AND position <= $1
), locked AS MATERIALIZED (  -- each chosen task with its run, the runs locked in run-id order
    SELECT c.position, c.task_id, r.run_id, r.pipeline_id, r.spec_hash, r.batch_date,
           r.trace_id, r.params
    FROM chosen AS c
    JOIN runs AS r ON r.run_id = c.run_id
    WHERE r.state = 'running'
    ORDER BY r.run_id
    FOR UPDATE OF r
), claimable AS MATERIALIZED (
    SELECT l.*
    FROM locked AS l
    JOIN task_instances AS t ON t.run_id = l.run_id AND t.task_id = l.task_id
    WHERE t.state = 'queued'
    FOR UPDATE OF t SKIP LOCKED
), claimed AS (
    UPDATE task_instances AS t
    SET state = 'running', attempt = t.attempt + 1, worker_id = $10, started_at = now(),
        lease_expires_at = CASE WHEN $12::float8 IS NULL
                                THEN now() + make_interval(secs => least($11, t.hold_seconds)) END,
        pickup_by = CASE WHEN $12::float8 IS NOT NULL THEN now() + make_interval(secs => $12) END,
        attempt_deadline = CASE WHEN $12::float8 IS NULL
                                THEN now() + make_interval(secs => t.hold_seconds) END,
        ended_at = NULL, exit_code = NULL, error_snippet = NULL, stderr_tail = NULL,
        updated_at = now()
    FROM claimable AS c
    WHERE t.run_id = c.run_id AND t.task_id = c.task_id AND t.state = 'queued'
    RETURNING c.position, t.run_id, t.task_id, t.attempt, t.started_at, t.queued_at,
              t.cpu_cores, t.memory_mb, c.pipeline_id, c.spec_hash, c.batch_date, c.trace_id,
              c.params, t.pickup_by, t.time_limit_seconds,
              (SELECT jsonb_object_agg(u.task_id, u.result) FROM task_instances AS u
               WHERE u.run_id = t.run_id AND u.result IS NOT NULL) AS results
)
-- No join of one CTE with another (planned as nested loops, each would cost n * n rows).
SELECT run_id, task_id, attempt, started_at, queued_at, cpu_cores, memory_mb, pipeline_id,
       spec_hash, batch_date, trace_id, params, pickup_by, time_limit_seconds, results
FROM (
    SELECT * FROM claimed
    UNION ALL
    SELECT position, run_id, task_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, NULL
    FROM chosen
    WHERE (run_id, task_id) NOT IN (SELECT run_id, task_id FROM claimed)
) AS every_chosen
ORDER BY position;

-- name: renew_leases
-- $1 worker id, $2 lease in seconds: the heartbeat of every attempt this worker runs.
-- Returns the attempts renewed (their keeper lets them run on).
-- Never past the attempt's deadline: a keeper that fails to stop an attempt in time loses it.
UPDATE task_instances
SET lease_expires_at = least(now() + make_interval(secs => $2), attempt_deadline)
WHERE worker_id = $1 AND state = 'running'
RETURNING run_id, task_id, attempt;

-- name: adopt_attempts
-- $1 worker id, $2 run ids, $3 task ids, $4 attempts, $5 lease in seconds: attempts a
-- predecessor's keeper still runs, taken over by this process (those still running as that
-- attempt; the others were judged lost meanwhile, and are stopped).
WITH adopted AS (
    UPDATE task_instances AS t
    SET worker_id = $1,
        lease_expires_at = least(now() + make_interval(secs => $5), t.attempt_deadline)
    FROM unnest($2::text[], $3::text[], $4::int[]) AS a(run_id, task_id, attempt)
    WHERE t.run_id = a.run_id AND t.task_id = a.task_id AND t.attempt = a.attempt
      AND t.state = 'running' AND NOT t.remote
    RETURNING t.run_id, t.task_id, t.attempt, t.started_at, t.queued_at, t.cpu_cores,
              t.memory_mb, t.time_limit_seconds
)
SELECT a.run_id, a.task_id, a.attempt, a.started_at, a.queued_at, a.cpu_cores, a.memory_mb,
       r.pipeline_id, r.spec_hash, r.batch_date, r.trace_id, r.params, a.time_limit_seconds
FROM adopted AS a JOIN runs AS r ON r.run_id = a.run_id;

-- name: attempts_held_by
-- $1 worker id: the local attempts the database says this worker holds. After a claim whose
-- answer was lost with its connection (committed or not: the client cannot tell), the
-- executor finds here what it was given.
SELECT t.run_id, t.task_id, t.attempt, t.started_at, t.queued_at, t.cpu_cores, t.memory_mb,
       r.pipeline_id, r.spec_hash, r.batch_date, r.trace_id, r.params, t.time_limit_seconds,
       (SELECT jsonb_object_agg(u.task_id, u.result) FROM task_instances AS u
        WHERE u.run_id = t.run_id AND u.result IS NOT NULL) AS results
FROM task_instances AS t JOIN runs AS r ON r.run_id = t.run_id
WHERE t.worker_id = $1 AND t.state = 'running' AND NOT t.remote;

-- name: renew_attempt_leases
-- $1 run ids, $2 task ids, $3 attempts, $4 worker ids, $5 lease in seconds: heartbeats of
-- remote workers; the worker id is recorded as the attempt's. The first one (the worker picked
-- the request up) starts the lease and marks when the attempt really started.
-- Never past the attempt's deadline (counted from the pickup).
UPDATE task_instances AS t
SET lease_expires_at = least(now() + make_interval(secs => $5),
                             CASE WHEN t.pickup_by IS NULL THEN t.attempt_deadline
                                  ELSE now() + make_interval(secs => t.hold_seconds) END),
    attempt_deadline = CASE WHEN t.pickup_by IS NULL THEN t.attempt_deadline
                            ELSE now() + make_interval(secs => t.hold_seconds) END,
    worker_id = h.worker_id,
    started_at = CASE WHEN t.pickup_by IS NULL THEN t.started_at ELSE now() END,
    pickup_by = NULL
FROM unnest($1::text[], $2::text[], $3::int[], $4::text[])
    AS h(run_id, task_id, attempt, worker_id)
WHERE t.run_id = h.run_id AND t.task_id = h.task_id AND t.attempt = h.attempt
  AND t.state = 'running';

-- name: unpicked_requests
-- $1 how many, $2 margin in seconds: remote attempts no worker picked up by their pickup
-- time (plus a margin for a first heartbeat on its way), to be requested again. Their runs
-- are locked in run-id order, like every writer's, by the caller.
SELECT t.run_id, t.task_id, t.attempt, t.started_at, t.queued_at, t.cpu_cores, t.memory_mb,
       r.pipeline_id, r.spec_hash, r.batch_date, r.trace_id, r.params, t.pickup_by,
       t.time_limit_seconds,
       (SELECT jsonb_object_agg(u.task_id, u.result) FROM task_instances AS u
        WHERE u.run_id = t.run_id AND u.result IS NOT NULL) AS results
FROM task_instances AS t JOIN runs AS r ON r.run_id = t.run_id
WHERE t.state = 'running' AND t.pickup_by < now() - make_interval(secs => $2)
ORDER BY t.pickup_by
LIMIT $1
FOR UPDATE OF t SKIP LOCKED;

-- name: extend_pickup
-- $1 run ids, $2 task ids, $3 attempts, $4 seconds: requested again, a new pickup time.
UPDATE task_instances AS t
SET pickup_by = now() + make_interval(secs => $4)
FROM unnest($1::text[], $2::text[], $3::int[]) AS a(run_id, task_id, attempt)
WHERE t.run_id = a.run_id AND t.task_id = a.task_id AND t.attempt = a.attempt
  AND t.state = 'running' AND t.pickup_by IS NOT NULL
RETURNING t.run_id, t.task_id, t.pickup_by;

-- name: expired_leases
-- $1 how many, $2 grace in seconds: running attempts whose worker stopped renewing their
-- lease more than a grace ago. In database time; the grace gives the holder, which stops an
-- attempt it cannot renew, time to have stopped it: one attempt never runs twice at once.
-- An attempt whose lease ran out at its deadline overstayed its time limit (past_deadline).
SELECT run_id, task_id, attempt, worker_id,
       coalesce(lease_expires_at >= attempt_deadline, false) AS past_deadline
FROM task_instances
WHERE state = 'running' AND lease_expires_at < now() - make_interval(secs => $2)
ORDER BY lease_expires_at
LIMIT $1;

-- name: flag_missed_deadlines
-- $1 how many: active runs past their SLA deadline, flagged once.
UPDATE runs SET deadline_missed_at = now()
WHERE run_id IN (
    SELECT run_id FROM runs
    WHERE deadline_missed_at IS NULL AND state IN ('queued', 'running') AND deadline_at < now()
    ORDER BY deadline_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
RETURNING run_id, pipeline_id, batch_date, state, deadline_at, trace_id;

-- name: due_retries
-- $1 how many: tasks up for retry whose time has come.
SELECT run_id, task_id
FROM task_instances
WHERE state = 'up_for_retry' AND retry_at <= now()
ORDER BY retry_at
LIMIT $1;

-- name: next_retry_at
SELECT min(retry_at) FROM task_instances WHERE state = 'up_for_retry';

-- name: record_ignored_events
-- $1 sources, $2 event ids, $3 types, $4 run ids, $5 task ids, $6 reasons.
INSERT INTO ignored_events (source, event_id, event_type, run_id, task_id, reason)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]);

-- name: insert_journal
-- $1 run ids, $2 task ids (NULL for the run), $3 attempts, $4 from, $5 to, $6 reasons (the
-- transition log), $7 actor; $8 event ids, $9 topics, $10 keys, $11 payloads (the outbox):
-- what a transaction logged and will announce, in one statement.
WITH moves AS (
    INSERT INTO transitions (run_id, task_id, attempt, from_state, to_state, reason, actor)
    SELECT run_id, task_id, attempt, from_state, to_state, reason, $7
    FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[])
        AS x(run_id, task_id, attempt, from_state, to_state, reason)
)
INSERT INTO outbox (event_id, topic, key, payload)
SELECT * FROM unnest($8::text[], $9::text[], $10::text[], $11::bytea[]);

-- name: try_relay_leadership
-- $1 lock key. One relay at a time keeps each run's events in order on the status topic.
SELECT pg_try_advisory_lock($1);

-- name: relay_marks_without_flush
-- For the relay leader's session (reset when it gives the lead up): marking events sent
-- commits without waiting for its WAL flush. A mark lost with a database crash only sends
-- those events again, as a relay crash between publishing and marking does (delivery is at
-- least once; consumers deduplicate by event id); waiting cost a disk flush per relay round.
SET synchronous_commit = off;

-- name: release_relay_leadership
-- $1 lock key.
SELECT pg_advisory_unlock($1);

-- name: mark_sent_and_read_unsent
-- $1 outbox row ids published since the last read (marked sent now), $2 how many: the oldest
-- events not yet published, those aside.
WITH sent AS (
    UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])
)
SELECT id, topic, key, payload FROM outbox
WHERE sent_at IS NULL AND id <> ALL($1::bigint[])
ORDER BY id
LIMIT $2;

-- name: mark_outbox_sent
-- $1 outbox row ids.
UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[]);


-- name: list_runs
-- $1 how many, $2 pipeline id, $3 state, $4 first and $5 last batch date (each NULL: any),
-- $6 how many to pass over (paging). Newest first.
SELECT run_id, pipeline_id, spec_hash, batch_date, trigger_key, state, params, trace_id,
       created_at, started_at, ended_at
FROM runs
WHERE ($2::text IS NULL OR pipeline_id = $2) AND ($3::text IS NULL OR state = $3)
  AND ($4::date IS NULL OR batch_date >= $4) AND ($5::date IS NULL OR batch_date <= $5)
ORDER BY created_at DESC, run_id DESC
LIMIT $1 OFFSET $6;

-- name: get_run
-- $1 run id.
SELECT run_id, pipeline_id, spec_hash, batch_date, trigger_key, state, params, trace_id,
       created_at, started_at, ended_at
FROM runs WHERE run_id = $1;

-- name: list_task_instances
-- $1 run id, in the order the tasks were started.
SELECT run_id, task_id, state, attempt, worker_id, queued_at, started_at, ended_at,
       exit_code, error_snippet, stderr_tail, result
FROM task_instances WHERE run_id = $1
ORDER BY started_at NULLS LAST, task_id;

-- name: input_versions
-- $1 datasets, $2 partitions (parallel arrays): the latest version of each that exists.
SELECT DISTINCT ON (d.dataset, d.partition) d.dataset, d.partition, d.version
FROM dataset_partitions AS d
JOIN unnest($1::text[], $2::text[]) AS i(dataset, partition)
  ON d.dataset = i.dataset AND d.partition = i.partition
ORDER BY d.dataset, d.partition, d.recorded_at DESC;

-- name: cached_success
-- $1 cache key: the run and attempt whose success it records, if any.
SELECT run_id, attempt FROM task_cache WHERE cache_key = $1;

-- name: record_cache_keys
-- $1 keys, $2 pipelines, $3 tasks, $4 runs, $5 attempts: the newest success under each key
-- (its outputs are the ones a later hit would reuse).
INSERT INTO task_cache (cache_key, pipeline_id, task_id, run_id, attempt)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[])
ON CONFLICT (cache_key) DO UPDATE
SET run_id = excluded.run_id, attempt = excluded.attempt, created_at = now();

-- name: archive_dead_letters
-- $1 topics, $2 partitions, $3 offsets, $4 keys, $5 reasons, $6 sizes, $7 hashes, $8 heads,
-- $9 tracebacks (parallel arrays): refused input, kept once per record.
INSERT INTO dead_letters (topic, partition, "offset", key, reason, size, sha256, head, traceback)
SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[], $5::text[], $6::int[],
                     $7::text[], $8::text[], $9::text[])
ON CONFLICT (topic, partition, "offset") DO NOTHING;

-- name: ping
SELECT 1;

-- name: database_exists
-- $1 database name.
SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1);


-- name: lock_admission
-- $1 pipeline id. Serializes admission of one pipeline's runs across replicas, until the
-- transaction ends (callers take several in pipeline id order).
SELECT pg_advisory_xact_lock(hashtextextended('tributary.admission:' || $1, 0));

-- name: running_batch_dates
-- $1 pipeline id: the batch date of each of its running runs.
SELECT batch_date FROM runs WHERE pipeline_id = $1 AND state = 'running';

-- name: waiting_runs
-- $1 pipeline id, $2 how many: its queued runs, the first of each batch date, oldest batch
-- date first.
SELECT DISTINCT ON (batch_date) run_id, batch_date
FROM runs
WHERE pipeline_id = $1 AND state = 'queued'
ORDER BY batch_date, created_at, run_id
LIMIT $2;

-- name: pipelines_with_waiting_runs
-- Pipelines that have queued runs (admission's sweep).
SELECT DISTINCT pipeline_id FROM runs WHERE state = 'queued';

-- name: pipelines_waiting_among
-- $1 pipeline ids: those of them that have queued runs.
SELECT p.pipeline_id
FROM unnest($1::text[]) AS p(pipeline_id)
WHERE EXISTS (SELECT 1 FROM runs AS r WHERE r.pipeline_id = p.pipeline_id AND r.state = 'queued');

-- name: newest_waiting_version
-- $1 pipeline id: the spec version of its newest queued run (for a retired pipeline).
SELECT spec_hash FROM runs WHERE pipeline_id = $1 AND state = 'queued'
ORDER BY created_at DESC LIMIT 1;


-- name: due_checks
-- $1 how many, $2 seconds a poke may take: checks of queued tasks whose next poke is due,
-- taken for this poker (their next poke moved past the time a poke may take, so another
-- replica does not poke them meanwhile).
UPDATE task_checks AS c
SET next_poke_at = now() + make_interval(secs => $2)
WHERE (c.run_id, c.task_id, c.position) IN (
    SELECT k.run_id, k.task_id, k.position
    FROM task_checks AS k
    JOIN task_instances AS t ON t.run_id = k.run_id AND t.task_id = k.task_id
    JOIN runs AS r ON r.run_id = k.run_id
    WHERE k.ready_at IS NULL AND t.state = 'queued' AND r.state = 'running'
      AND (k.next_poke_at IS NULL OR k.next_poke_at <= now())
    ORDER BY k.next_poke_at NULLS FIRST
    LIMIT $1
    FOR UPDATE OF k SKIP LOCKED
)
RETURNING c.run_id, c.task_id, c.position, c.probe, c.poke_seconds, c.poke_backoff,
          c.max_poke_seconds, c.pokes, c.errors;

-- name: record_pokes
-- $1 run ids, $2 task ids, $3 positions, $4 ready, $5 error (parallel arrays), $6 results,
-- $7 seconds to the next poke: what each poke answered.
UPDATE task_checks AS c
SET pokes = c.pokes + 1,
    errors = CASE WHEN p.error THEN c.errors + 1 ELSE 0 END,
    last_result = p.result,
    ready_at = CASE WHEN p.ready THEN now() END,
    next_poke_at = CASE WHEN p.ready THEN NULL ELSE now() + make_interval(secs => p.wait) END
FROM unnest($1::text[], $2::text[], $3::int[], $4::boolean[], $5::boolean[], $6::text[],
            $7::float8[]) AS p(run_id, task_id, position, ready, error, result, wait)
WHERE c.run_id = p.run_id AND c.task_id = p.task_id AND c.position = p.position
  AND c.ready_at IS NULL;

-- name: failed_waits
-- $1 how many, $2 errors in a row that fail a check: queued tasks of running runs with a wait
-- that timed out (counted from when the task was queued) or a check that keeps erring;
-- what it waited for, since when, and why it failed.
SELECT run_id, task_id, what, probe, since, why FROM (
    SELECT w.run_id, w.task_id, w.dataset || ' ' || w.partition AS what, NULL::jsonb AS probe,
           t.queued_at AS since, 'wait_timeout' AS why
    FROM task_waits AS w
    JOIN task_instances AS t ON t.run_id = w.run_id AND t.task_id = w.task_id
    JOIN runs AS r ON r.run_id = w.run_id
    WHERE t.state = 'queued' AND r.state = 'running' AND w.timeout_seconds IS NOT NULL
      AND t.queued_at + make_interval(secs => w.timeout_seconds) < now()
      AND NOT EXISTS (SELECT 1 FROM dataset_partitions AS d
                      WHERE d.dataset = w.dataset AND d.partition = w.partition)
    UNION ALL
    SELECT c.run_id, c.task_id, NULL, c.probe, t.queued_at,
           CASE WHEN c.errors >= $2 THEN 'check_error: ' || coalesce(c.last_result, '')
                ELSE 'wait_timeout' END
    FROM task_checks AS c
    JOIN task_instances AS t ON t.run_id = c.run_id AND t.task_id = c.task_id
    JOIN runs AS r ON r.run_id = c.run_id
    WHERE t.state = 'queued' AND r.state = 'running' AND c.ready_at IS NULL
      AND (c.errors >= $2 OR t.queued_at + make_interval(secs => c.timeout_seconds) < now())
) AS failed
ORDER BY since
LIMIT $1;

-- name: run_waits
-- $1 run id: what each of its queued tasks still waits for, since when.
SELECT w.task_id, w.dataset || ' ' || w.partition AS what, NULL::jsonb AS probe,
       t.queued_at AS since, w.timeout_seconds, NULL::int AS pokes, NULL::text AS last_result
FROM task_waits AS w
JOIN task_instances AS t ON t.run_id = w.run_id AND t.task_id = w.task_id
WHERE w.run_id = $1 AND t.state = 'queued'
  AND NOT EXISTS (SELECT 1 FROM dataset_partitions AS d
                  WHERE d.dataset = w.dataset AND d.partition = w.partition)
UNION ALL
SELECT c.task_id, NULL, c.probe, t.queued_at, c.timeout_seconds, c.pokes, c.last_result
FROM task_checks AS c
JOIN task_instances AS t ON t.run_id = c.run_id AND t.task_id = c.task_id
WHERE c.run_id = $1 AND t.state = 'queued' AND c.ready_at IS NULL
ORDER BY 1, 4;

-- name: lock_schedule
-- $1 pipeline id, $2 cron, $3 timezone, $4 now: its schedule row, created (handled until now:
-- a new schedule does not fire for the past) or reset to now when its cron or timezone
-- changed, and locked for this transaction, so one replica at a time fires it.
INSERT INTO schedules AS s (pipeline_id, cron, timezone, handled_until)
VALUES ($1, $2, $3, $4)
ON CONFLICT (pipeline_id) DO UPDATE
SET cron = excluded.cron, timezone = excluded.timezone,
    handled_until = CASE WHEN (s.cron, s.timezone) = (excluded.cron, excluded.timezone)
                         THEN s.handled_until ELSE excluded.handled_until END,
    updated_at = now()
RETURNING handled_until;

-- name: mark_schedule_handled
-- $1 pipeline id, $2 the fire time up to which every fire is handled.
UPDATE schedules SET handled_until = greatest(handled_until, $2), updated_at = now()
WHERE pipeline_id = $1;

-- name: record_schedule_fire
-- $1 pipeline id, $2 fire time, $3 the run it started. False (no row) when it exists.
INSERT INTO schedule_fires (pipeline_id, fire_at, run_id) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING
RETURNING run_id;


-- name: other_active_run
-- $1 pipeline, $2 batch date, $3 a run id: another queued or running run of that date.
SELECT run_id FROM runs
WHERE pipeline_id = $1 AND batch_date = $2 AND run_id <> $3 AND state IN ('queued', 'running')
LIMIT 1;

-- name: insert_audit
-- $1 event ids, $2 actors, $3 commands, $4 run ids, $5 task ids, $6 pipeline ids, $7 reasons,
-- $8 outcomes, $9 details (parallel arrays).
INSERT INTO audit_log (event_id, actor, command, run_id, task_id, pipeline_id, reason, outcome,
                       detail)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::text[]);

-- name: run_audit
-- $1 run id: the commands about it, oldest first.
SELECT at, actor, command, task_id, reason, outcome, detail
FROM audit_log WHERE run_id = $1 ORDER BY id;

-- name: paused_pipelines
SELECT pipeline_id FROM pipeline_controls WHERE paused;

-- name: set_paused
-- $1 pipeline, $2 paused, $3 who, $4 why. Returns whether it was paused before.
WITH before AS (SELECT paused FROM pipeline_controls WHERE pipeline_id = $1)
INSERT INTO pipeline_controls (pipeline_id, paused, changed_by, reason) VALUES ($1, $2, $3, $4)
ON CONFLICT (pipeline_id) DO UPDATE
SET paused = excluded.paused, changed_by = excluded.changed_by, changed_at = now(),
    reason = excluded.reason
RETURNING coalesce((SELECT paused FROM before), false) AS was_paused;

-- name: is_paused
-- $1 pipeline id.
SELECT coalesce((SELECT paused FROM pipeline_controls WHERE pipeline_id = $1), false);

-- name: cancelled_attempts
-- $1 run ids, $2 task ids, $3 attempts: those of these attempts whose task was cancelled.
SELECT t.run_id, t.task_id, t.attempt
FROM task_instances AS t
JOIN unnest($1::text[], $2::text[], $3::int[]) AS a(run_id, task_id, attempt)
  ON t.run_id = a.run_id AND t.task_id = a.task_id AND t.attempt = a.attempt
WHERE t.state = 'cancelled';

-- name: runs_for_triggers
-- $1 pipelines, $2 trigger keys (parallel arrays): the runs those (pipeline, key) pairs made.
SELECT r.pipeline_id, r.trigger_key, r.run_id
FROM runs AS r
JOIN unnest($1::text[], $2::text[]) AS k(pipeline_id, trigger_key)
  ON r.pipeline_id = k.pipeline_id AND r.trigger_key = k.trigger_key;

-- name: run_transitions
-- $1 run id: its history, oldest first: every state change, who made it, and why.
SELECT at, task_id, attempt, from_state, to_state, reason, actor
FROM transitions WHERE run_id = $1 ORDER BY id;

-- name: task_attempt_history
-- $1 run id, $2 task id: every ended attempt, oldest first.
SELECT attempt, state, worker_id, started_at, ended_at, exit_code, error_snippet, stderr_tail,
       result
FROM task_attempts WHERE run_id = $1 AND task_id = $2 ORDER BY attempt;

-- name: list_partitions
-- $1 dataset or NULL for all, $2 how many: announced partition versions, newest first.
SELECT dataset, partition, version, producer, event_id, recorded_at
FROM dataset_partitions
WHERE $1::text IS NULL OR dataset = $1
ORDER BY recorded_at DESC
LIMIT $2;

-- name: list_dead_letters
-- $1 how many: the newest dead letters, each with a preview of what was refused.
SELECT id, at, topic, partition, "offset", key, reason, size, sha256, head
FROM dead_letters ORDER BY id DESC LIMIT $1;

-- name: last_runs
-- $1 pipeline ids, $2 how many: each pipeline's newest runs.
SELECT p.pipeline_id, r.run_id, r.batch_date, r.state, r.created_at
FROM unnest($1::text[]) AS p(pipeline_id)
CROSS JOIN LATERAL (
    SELECT run_id, batch_date, state, created_at FROM runs
    WHERE runs.pipeline_id = p.pipeline_id
    ORDER BY created_at DESC
    LIMIT $2
) AS r
ORDER BY p.pipeline_id, r.created_at DESC;

-- name: set_run_version
-- $1 run id, $2 spec hash: an operator's retry moves the run to its pipeline's current version.
UPDATE runs SET spec_hash = $2, updated_at = now() WHERE run_id = $1;

-- name: pipeline_figures
-- $1 pipeline ids, $2 how many of each pipeline's newest ended runs: how many ended and
-- succeeded, and their duration's median and 95th percentile, in seconds.
SELECT p.pipeline_id,
       count(r.run_id) AS ended,
       count(r.run_id) FILTER (WHERE r.state = 'success') AS succeeded,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY r.seconds) AS p50_seconds,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY r.seconds) AS p95_seconds
FROM unnest($1::text[]) AS p(pipeline_id)
LEFT JOIN LATERAL (
    SELECT run_id, state, extract(epoch FROM ended_at - started_at)::float8 AS seconds
    FROM runs
    WHERE runs.pipeline_id = p.pipeline_id AND state IN ('success', 'failed', 'cancelled')
    ORDER BY created_at DESC
    LIMIT $2
) AS r ON true
GROUP BY p.pipeline_id;

-- name: newest_deadlines
-- $1 pipeline ids: each pipeline's newest run that has an SLA deadline, to tell its SLA state.
SELECT p.pipeline_id, r.run_id, r.state, r.deadline_at, r.deadline_missed_at, r.ended_at
FROM unnest($1::text[]) AS p(pipeline_id)
CROSS JOIN LATERAL (
    SELECT run_id, state, deadline_at, deadline_missed_at, ended_at FROM runs
    WHERE runs.pipeline_id = p.pipeline_id AND deadline_at IS NOT NULL
    ORDER BY created_at DESC
    LIMIT 1
) AS r;

-- name: heat_map
-- $1 pipeline id, $2 how many batch dates: the newest run of each of the newest batch dates,
-- and each of its tasks: state, attempts, duration and queue wait (seconds; running: so far).
WITH dates AS (
    SELECT DISTINCT ON (batch_date) batch_date, run_id
    FROM runs WHERE pipeline_id = $1
    ORDER BY batch_date DESC, created_at DESC
    LIMIT $2
)
SELECT d.batch_date, d.run_id, t.task_id, t.state, t.attempt,
       extract(epoch FROM coalesce(t.ended_at, now()) - t.started_at)::float8 AS duration_seconds,
       extract(epoch FROM t.started_at - t.queued_at)::float8 AS queue_wait_seconds
FROM dates AS d
JOIN task_instances AS t ON t.run_id = d.run_id
ORDER BY d.batch_date, t.task_id;

-- name: run_attempts
-- $1 run id: every ended attempt of every task of the run, for its Gantt chart.
SELECT task_id, attempt, state, started_at, ended_at
FROM task_attempts WHERE run_id = $1
ORDER BY started_at NULLS LAST, task_id, attempt;

-- name: transitions_after
-- $1 the last transition seen, $2 how many: the state changes since, oldest first, each with
-- its run's pipeline (the dashboard's live feed when Redis is away).
SELECT t.id, t.run_id, r.pipeline_id, t.task_id, t.attempt, t.to_state AS state, t.at
FROM transitions AS t
JOIN runs AS r ON r.run_id = t.run_id
WHERE t.id > $1
ORDER BY t.id
LIMIT $2;

-- name: last_transition
SELECT coalesce(max(id), 0) FROM transitions;

-- name: newest_partitions
-- $1 datasets: the newest announced version of each, if any.
SELECT n.*
FROM unnest($1::text[]) AS d(dataset)
CROSS JOIN LATERAL (
    SELECT dataset, partition, version, producer, event_id, recorded_at FROM dataset_partitions
    WHERE dataset_partitions.dataset = d.dataset
    ORDER BY recorded_at DESC
    LIMIT 1
) AS n;

-- name: record_output
-- $1 run id, $2 task id, $3 attempt, $4 dataset, $5 partition, $6 version, $7 uri, $8 input
-- datasets and $9 input partitions (parallel arrays: their newest versions are recorded),
-- $10 params, $11 duration in seconds, $12 exit code, $13 result.
INSERT INTO output_records (run_id, task_id, attempt, dataset, partition, version, uri,
                            input_versions, params, duration_seconds, exit_code, result)
SELECT $1, $2, $3, $4, $5, $6, $7,
       coalesce((SELECT jsonb_agg(jsonb_build_object('dataset', i.dataset,
                                                     'partition', i.partition,
                                                     'version', v.version)
                                  ORDER BY i.dataset, i.partition)
                 FROM unnest($8::text[], $9::text[]) AS i(dataset, partition)
                 LEFT JOIN LATERAL (
                     SELECT version FROM dataset_partitions AS d
                     WHERE d.dataset = i.dataset AND d.partition = i.partition
                     ORDER BY recorded_at DESC LIMIT 1
                 ) AS v ON true), '[]'::jsonb),
       $10::jsonb, $11, $12, $13::jsonb
ON CONFLICT (run_id, task_id, attempt, dataset) DO NOTHING;

-- name: run_outputs
-- $1 run id: what its tasks produced, each output with what produced it.
SELECT task_id, attempt, dataset, partition, version, uri, input_versions, params,
       duration_seconds, exit_code, result, recorded_at
FROM output_records WHERE run_id = $1 ORDER BY recorded_at, task_id, dataset;

-- name: failed_tasks
-- $1 since when, $2 how many: tasks that failed or timed out for good since then (their
-- instance still is), newest first, with why (the failing move's reason) and their error.
SELECT t.run_id, r.pipeline_id, r.batch_date, t.task_id, t.state, t.attempt, t.ended_at,
       t.exit_code, t.error_snippet,
       (SELECT x.reason FROM transitions AS x
        WHERE x.run_id = t.run_id AND x.task_id = t.task_id AND x.to_state = t.state
        ORDER BY x.id DESC LIMIT 1) AS reason
FROM task_instances AS t JOIN runs AS r ON r.run_id = t.run_id
WHERE t.state IN ('failed', 'timed_out') AND t.ended_at >= $1
ORDER BY t.ended_at DESC
LIMIT $2;

-- name: prune_transitions
-- $1 the cutoff, $2 how many at most: transition-log rows older than the cutoff, deleted
-- (rows another pruner holds are passed over). Returns how many.
WITH pruned AS (
    DELETE FROM transitions WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM transitions WHERE at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED))
    RETURNING 1
)
SELECT count(*) FROM pruned;

-- name: prune_processed_events
-- $1 the cutoff, $2 how many at most: ids of events applied before the cutoff (a duplicate
-- arriving later than that is applied as new; the engine ignores what no longer applies).
WITH pruned AS (
    DELETE FROM processed_events WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM processed_events WHERE processed_at < $1 LIMIT $2
        FOR UPDATE SKIP LOCKED))
    RETURNING 1
)
SELECT count(*) FROM pruned;

-- name: prune_outbox
-- $1 the cutoff, $2 how many at most: outbox rows written before the cutoff and sent (an
-- unsent row is kept, however old, until the relay has sent it).
WITH pruned AS (
    DELETE FROM outbox WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM outbox WHERE created_at < $1 AND sent_at IS NOT NULL LIMIT $2
        FOR UPDATE SKIP LOCKED))
    RETURNING 1
)
SELECT count(*) FROM pruned;

-- name: prune_ignored_events
-- $1 the cutoff, $2 how many at most: ignored events recorded before the cutoff.
WITH pruned AS (
    DELETE FROM ignored_events WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM ignored_events WHERE at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED))
    RETURNING 1
)
SELECT count(*) FROM pruned;
