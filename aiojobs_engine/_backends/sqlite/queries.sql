-- SQLite statements of the backend. Times are INTEGER microseconds; :now is always bound.
-- Batches arrive as one JSON array parameter (:batch) read with json_each, so a batch of
-- any size is one statement: SQLite has no arrays to bind, and executemany cannot RETURN.
--
-- Dialect notes:
-- * Every write is a single statement in autocommit mode, so it holds SQLite's one write
--   lock only while SQLite runs it, never across turns of the event loop (a job that blocks
--   the loop must not lock every other process out of the database). A statement reads
--   and writes under that lock, so two engines, in one process or many, can never select
--   the same waiting row for their claims: no SKIP LOCKED is needed.
-- * Where the engine needs several statements (rescue: delete dead engines, then rescue
--   jobs), each is correct on its own and the next pass repairs an interrupted sequence.
--   The exception is a replacing enqueue (job_unique_replace, then job_insert or
--   job_insert_many): one BEGIN IMMEDIATE transaction, so a failed insert undoes the cancel.
-- * aiojobs_expires_at(now, state, keep_completed, keep_failed, keep_canceled) is a Python
--   function the backend registers on its connections (PostgreSQL has it as an SQL
--   function): when a job that just reached `state` may be deleted; NULL: kept.
-- * A job with a unique key occupies it while its state is in its unique_states; the
--   unique index enforces it, so inserts say ON CONFLICT DO NOTHING and the caller reads
--   back the job that holds the key.

-- name: job_insert
INSERT INTO aiojobs_jobs (queue, name, args, kwargs, constructor_args, meta, retry, priority,
                          max_attempts, timeout, inserted_at, available_at, unique_key,
                          unique_states, rescheduled_from, keep_completed, keep_failed,
                          keep_canceled, concurrency_key)
VALUES (:queue, :name, :args, :kwargs, :constructor_args, :meta, :retry, :priority,
        :max_attempts, :timeout, :now, :available_at, :unique_key, :unique_states,
        :rescheduled_from, :keep_completed, :keep_failed, :keep_canceled, :concurrency_key)
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND instr(unique_states, ',' || state || ',') > 0
DO NOTHING
RETURNING id, unique_key, inserted_at, available_at;

-- name: job_insert_many
-- "WHERE true" tells SQLite's parser that ON CONFLICT belongs to the INSERT. A job with no
-- concurrency key leaves it out of its object (->> reads a missing member as NULL).
INSERT INTO aiojobs_jobs (queue, name, args, kwargs, constructor_args, meta, retry, priority,
                          max_attempts, timeout, inserted_at, available_at, unique_key,
                          unique_states, rescheduled_from, keep_completed, keep_failed,
                          keep_canceled, concurrency_key)
SELECT value ->> 'queue', value ->> 'name', value ->> 'args', value ->> 'kwargs',
       value ->> 'constructor_args', value ->> 'meta', value ->> 'retry', value ->> 'priority',
       value ->> 'max_attempts', value ->> 'timeout', :now, value ->> 'available_at',
       value ->> 'unique_key', value ->> 'unique_states', value ->> 'rescheduled_from',
       value ->> 'keep_completed', value ->> 'keep_failed', value ->> 'keep_canceled',
       value ->> 'concurrency_key'
FROM json_each(:batch)
WHERE true
ORDER BY key
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND instr(unique_states, ',' || state || ',') > 0
DO NOTHING
RETURNING id, unique_key, inserted_at, available_at;

-- name: job_unique_holders
-- The jobs holding these unique keys now (the ones a conflicting insert ran into).
SELECT * FROM aiojobs_jobs
WHERE unique_key IN (SELECT value FROM json_each(:keys))
  AND instr(unique_states, ',' || state || ',') > 0;

-- name: job_unique_replace
-- Free these keys for newer jobs: cancel the jobs holding them that have not started, and
-- those running since before their stuck_before (stuck); a job running for less is left
-- alone (the newer job then yields to it). A replaced job stops holding its key even if its
-- unique states include canceled (its replacement is inserted next, in the same transaction).
UPDATE aiojobs_jobs AS j
SET state = 'canceled',
    unique_states = replace(j.unique_states, ',canceled,', ','),
    canceled_at = :now,
    expires_at = aiojobs_expires_at(:now, 'canceled', -1, -1,
                                    coalesce(j.keep_canceled, q.keep_canceled, :keep_canceled)),
    errors = json_insert(j.errors, '$[#]', json_object(
        'name', 'Replaced', 'message', 'replaced by a newer job with the same unique key',
        'traceback', NULL, 'attempt', j.attempt, 'attempted_by', NULL, 'attempted_at', NULL)),
    claim_token = NULL,
    cancel_requested = 0
FROM (SELECT value ->> 'key' AS key, value ->> 'stuck_before' AS stuck_before
      FROM json_each(:batch)) AS r, aiojobs_queues AS q
WHERE j.unique_key = r.key AND q.name = j.queue
  AND instr(j.unique_states, ',' || j.state || ',') > 0
  AND (j.state IN ('waiting', 'snoozed', 'claimed')
       OR (j.state = 'running' AND j.attempted_at < r.stuck_before))
RETURNING id, claimed_by;

-- name: job_get
SELECT * FROM aiojobs_jobs WHERE id = :id;

-- name: job_list
SELECT * FROM aiojobs_jobs
WHERE (:states IS NULL OR state IN (SELECT value FROM json_each(:states)))
  AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
  AND (:names IS NULL OR name IN (SELECT value FROM json_each(:names)))
  AND (:before_id IS NULL OR id < :before_id)
  -- json_tree walks every value; json() turns the stored text back into JSON for json_array.
  AND (:search IS NULL OR EXISTS (
      SELECT 1 FROM json_tree(json_array(json(args), json(kwargs), json(constructor_args), json(meta)))
      WHERE type IN ('text', 'integer', 'real') AND instr(lower(atom), lower(:search)) > 0))
ORDER BY id DESC
LIMIT :limit;

-- name: job_claim
-- One statement for every demand: the picks placeholder becomes one job_claim_pick per
-- demand, joined with UNION ALL. Picks for which {starts} holds start at once ('running',
-- attempt counted): a job named in start_now, and (in a claim of a rate-limited queue, where
-- the claim is the start the limit counts) every job of a queue in start_queues. The others
-- are 'claimed', to be started by job_start_many. Claims only while this engine's row (this
-- incarnation) has a fresh heartbeat, so an engine that others may already consider dead
-- takes nothing new.
UPDATE aiojobs_jobs
SET state = CASE WHEN {starts} THEN 'running' ELSE 'claimed' END,
    attempt = attempt + ({starts}),
    attempted_at = CASE WHEN {starts} THEN :now ELSE attempted_at END,
    claimed_by = :engine_id,
    claimed_at = :now,
    claim_token = lower(hex(randomblob(16)))
WHERE id IN ({picks})
  AND (:incarnation IS NULL OR EXISTS (
      SELECT 1 FROM aiojobs_engines
      WHERE id = :engine_id AND incarnation = :incarnation AND heartbeat_at >= :fresh_since))
RETURNING *;

-- name: job_claim_pick
-- One demand: due jobs of one queue in claim-index order; with a global cap, no more than
-- leaves that many jobs of the queue held across all engines (exact: one writer at a time).
SELECT id FROM (
    SELECT id FROM aiojobs_jobs
    WHERE state IN ('waiting', 'snoozed') AND queue = :queue_{n} AND available_at <= :now
    ORDER BY priority, available_at, id
    LIMIT max(0, CASE WHEN :global_{n} IS NULL THEN :limit_{n}
                      ELSE min(:limit_{n}, :global_{n} - (
                          SELECT count(*) FROM aiojobs_jobs
                          WHERE queue = :queue_{n} AND state IN ('claimed', 'running'))) END)
)

-- name: job_start_many
-- Idempotent: a start whose reply was lost and is sent again finds the job already running
-- under the same token, and returns it without counting the attempt twice.
-- "+j.state" keeps SQLite from scanning the state index: the batch drives, by primary key.
UPDATE aiojobs_jobs AS j
SET state = 'running',
    attempt = CASE WHEN j.state = 'claimed' THEN j.attempt + 1 ELSE j.attempt END,
    attempted_at = CASE WHEN j.state = 'claimed' THEN :now ELSE j.attempted_at END
FROM (SELECT value ->> '$[0]' AS id, value ->> '$[1]' AS token FROM json_each(:batch)) AS s
WHERE j.id = s.id AND j.claim_token = s.token AND +j.state IN ('claimed', 'running')
RETURNING id, attempt, attempted_at;

-- name: job_finish_many
-- A cancellation asked for while the attempt ran wins over going back to waiting/snoozed.
-- A NULL delay keeps available_at: a job handed back (shutdown) keeps its place in line,
-- ahead of jobs of its priority made available after it.
UPDATE aiojobs_jobs AS j
SET state = CASE WHEN j.cancel_requested = 1 AND o.state IN ('waiting', 'snoozed') THEN 'canceled'
                 ELSE o.state END,
    result = CASE WHEN o.state = 'completed' THEN o.result ELSE j.result END,
    errors = CASE WHEN o.error IS NULL THEN j.errors
                  ELSE json_insert(j.errors, '$[#]', json(o.error)) END,
    available_at = CASE WHEN o.delay IS NULL THEN j.available_at
                        ELSE :now + CAST(o.delay * 1000000 AS INTEGER) END,
    attempt = j.attempt - o.give_back,
    completed_at = CASE WHEN o.state = 'completed' THEN :now ELSE j.completed_at END,
    failed_at = CASE WHEN o.state = 'failed' THEN :now ELSE j.failed_at END,
    canceled_at = CASE WHEN o.state = 'canceled'
                            OR (j.cancel_requested = 1 AND o.state IN ('waiting', 'snoozed'))
                       THEN :now ELSE j.canceled_at END,
    expires_at = aiojobs_expires_at(
        :now,
        CASE WHEN j.cancel_requested = 1 AND o.state IN ('waiting', 'snoozed') THEN 'canceled'
             ELSE o.state END,
        coalesce(j.keep_completed, q.keep_completed, :keep_completed),
        coalesce(j.keep_failed, q.keep_failed, :keep_failed),
        coalesce(j.keep_canceled, q.keep_canceled, :keep_canceled)),
    claim_token = NULL,
    cancel_requested = 0
FROM (SELECT value ->> 'id' AS id, value ->> 'token' AS token, value ->> 'from' AS from_state,
             value ->> 'state' AS state, value ->> 'result' AS result, value ->> 'error' AS error,
             value ->> 'delay' AS delay, value ->> 'give_back' AS give_back
      FROM json_each(:batch)) AS o, aiojobs_queues AS q
WHERE j.id = o.id AND j.claim_token = o.token AND j.state = o.from_state AND q.name = j.queue
RETURNING id;

-- name: job_delete_fenced
DELETE FROM aiojobs_jobs
WHERE id IN (SELECT j.id FROM aiojobs_jobs AS j
             JOIN json_each(:batch) AS o
               ON j.id = o.value ->> 'id' AND j.claim_token = o.value ->> 'token'
              AND j.state = o.value ->> 'from')
RETURNING id;

-- name: job_cancel
UPDATE aiojobs_jobs AS j
SET state = CASE WHEN j.state = 'running' THEN j.state ELSE 'canceled' END,
    canceled_at = CASE WHEN j.state = 'running' THEN j.canceled_at ELSE :now END,
    expires_at = CASE WHEN j.state = 'running' THEN NULL
                      ELSE aiojobs_expires_at(:now, 'canceled', -1, -1,
                                              coalesce(j.keep_canceled, q.keep_canceled, :keep_canceled)) END,
    cancel_requested = CASE WHEN j.state = 'running' THEN 1 ELSE j.cancel_requested END,
    claim_token = CASE WHEN j.state = 'running' THEN j.claim_token ELSE NULL END
FROM aiojobs_queues AS q
WHERE j.id = :id AND j.state IN ('waiting', 'snoozed', 'claimed', 'running') AND q.name = j.queue
RETURNING *;

-- name: job_claims_to_stop
-- The batch's claims that are canceled (held = 1) or gone (held = 0), by primary key.
SELECT c.id, c.token,
       coalesce(j.claim_token = c.token AND j.state IN ('claimed', 'running'), 0) AS held
FROM (SELECT value ->> '$[0]' AS id, value ->> '$[1]' AS token FROM json_each(:batch)) AS c
LEFT JOIN aiojobs_jobs AS j ON j.id = c.id
WHERE j.id IS NULL OR j.claim_token IS NOT c.token OR j.state NOT IN ('claimed', 'running')
   OR j.cancel_requested = 1;

-- name: job_held
SELECT id, claim_token, state FROM aiojobs_jobs
WHERE claimed_by = :engine_id AND state IN ('claimed', 'running');

-- name: job_retry
UPDATE aiojobs_jobs
SET state = 'waiting', available_at = :now, max_attempts = max(max_attempts, attempt + 1),
    completed_at = NULL, failed_at = NULL, canceled_at = NULL, expires_at = NULL,
    claim_token = NULL, cancel_requested = 0
WHERE id = :id AND state IN ('failed', 'canceled', 'completed')
RETURNING *;

-- name: job_snooze
-- An operator puts a pending job aside until :available_at. Attempt, errors and unique key
-- are left alone (snoozed holds the key as waiting does); other states are not touched.
UPDATE aiojobs_jobs SET state = 'snoozed', available_at = :available_at
WHERE id = :id AND state IN ('waiting', 'snoozed')
RETURNING *;

-- name: job_delete
DELETE FROM aiojobs_jobs WHERE id = :id AND state NOT IN ('claimed', 'running') RETURNING id;

-- name: job_delete_where
DELETE FROM aiojobs_jobs
WHERE (:states IS NULL OR state IN (SELECT value FROM json_each(:states)))
  AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)));

-- name: job_count
SELECT queue, state, count(*) AS n FROM aiojobs_jobs GROUP BY queue, state;

-- name: job_count_due
SELECT queue, state, count(*) AS n FROM aiojobs_jobs
WHERE state IN ('waiting', 'snoozed') AND available_at <= :now
GROUP BY queue, state;

-- name: engine_delete_stale
DELETE FROM aiojobs_engines WHERE heartbeat_at < :stale_before RETURNING id;

-- name: job_rescue
-- A held job whose engine is gone (or is :engine_id, restarting): a job never started goes
-- back as it was; a started one has used its attempt, and fails for good if it was the last;
-- one whose cancellation was asked for is canceled.
-- available_at is kept (it was due when the job was claimed): a job back in waiting runs
-- before jobs of its priority made available after it, as it would have without the crash.
-- Nothing is announced, unlike PostgreSQL's twin: SQLite has no NOTIFY, and engines on
-- other connections (other processes) see the commit as a change of PRAGMA data_version,
-- which their change watch reports within tens of milliseconds. The rescuing connection
-- itself sees no change.
UPDATE aiojobs_jobs AS j
SET state = CASE WHEN cancel_requested = 1 THEN 'canceled'
                 WHEN state = 'running' AND attempt >= max_attempts THEN 'failed'
                 ELSE 'waiting' END,
    expires_at = aiojobs_expires_at(
        :now,
        CASE WHEN cancel_requested = 1 THEN 'canceled'
             WHEN state = 'running' AND attempt >= max_attempts THEN 'failed'
             ELSE 'waiting' END,
        -1,
        coalesce(j.keep_failed, q.keep_failed, :keep_failed),
        coalesce(j.keep_canceled, q.keep_canceled, :keep_canceled)),
    failed_at = CASE WHEN cancel_requested = 0 AND state = 'running' AND attempt >= max_attempts
                     THEN :now ELSE failed_at END,
    canceled_at = CASE WHEN cancel_requested = 1 THEN :now ELSE canceled_at END,
    errors = CASE WHEN state = 'running' THEN json_insert(errors, '$[#]', json_object(
                 'name', 'EngineLost',
                 'message', 'the engine running this attempt (' || claimed_by || ') stopped heartbeating',
                 'traceback', NULL,
                 'attempt', attempt,
                 'attempted_by', claimed_by,
                 'attempted_at', strftime('%Y-%m-%dT%H:%M:%f+00:00', attempted_at / 1000000.0, 'unixepoch')))
             ELSE errors END,
    claim_token = NULL,
    cancel_requested = 0
FROM aiojobs_queues AS q
WHERE j.state IN ('claimed', 'running') AND q.name = j.queue
  AND (j.claimed_by = :engine_id
       OR (:engine_id IS NULL AND j.claimed_by NOT IN (SELECT id FROM aiojobs_engines)))
RETURNING *;

-- name: job_prune
-- Finished jobs past their expiry (set when they finished, from job, queue or engine).
DELETE FROM aiojobs_jobs WHERE id IN (
    SELECT id FROM aiojobs_jobs WHERE expires_at < :now ORDER BY expires_at LIMIT :limit
);

-- name: queue_list
SELECT * FROM aiojobs_queues ORDER BY priority, name;

-- name: queue_upsert
-- keep_*: :set_keep_* says whether to write the value (NULL then means "use the engine's").
INSERT INTO aiojobs_queues (name, concurrency, priority, paused, global_concurrency, updated_at,
                            keep_completed, keep_failed, keep_canceled, rate_limit, rate_period,
                            concurrency_per_key, rate_limit_per_key, rate_period_per_key)
VALUES (:name, coalesce(:concurrency, 10), coalesce(:priority, 50), coalesce(:paused, 0),
        :global_concurrency, :now, :keep_completed, :keep_failed, :keep_canceled, :rate_limit, :rate_period,
        :concurrency_per_key, :rate_limit_per_key, :rate_period_per_key)
ON CONFLICT (name) DO UPDATE
SET concurrency = coalesce(:concurrency, concurrency),
    concurrency_per_key = CASE WHEN :clear_per_key THEN NULL
                               ELSE coalesce(:concurrency_per_key, concurrency_per_key) END,
    rate_limit_per_key = CASE WHEN :clear_rate_per_key THEN NULL
                              ELSE coalesce(:rate_limit_per_key, rate_limit_per_key) END,
    rate_period_per_key = CASE WHEN :clear_rate_per_key THEN NULL
                               ELSE coalesce(:rate_period_per_key, rate_period_per_key) END,
    rate_limit = CASE WHEN :clear_rate THEN NULL ELSE coalesce(:rate_limit, rate_limit) END,
    rate_period = CASE WHEN :clear_rate THEN NULL ELSE coalesce(:rate_period, rate_period) END,
    priority = coalesce(:priority, priority),
    paused = coalesce(:paused, paused),
    global_concurrency = CASE WHEN :clear_global THEN NULL
                              ELSE coalesce(:global_concurrency, global_concurrency) END,
    keep_completed = CASE WHEN :set_keep_completed THEN :keep_completed ELSE keep_completed END,
    keep_failed = CASE WHEN :set_keep_failed THEN :keep_failed ELSE keep_failed END,
    keep_canceled = CASE WHEN :set_keep_canceled THEN :keep_canceled ELSE keep_canceled END,
    updated_at = :now
RETURNING *;

-- name: rate_windows
SELECT queue, starts FROM aiojobs_rate_windows WHERE key = '' AND queue IN (SELECT value FROM json_each(:queues));

-- name: rate_window_write
INSERT INTO aiojobs_rate_windows (queue, key, starts) VALUES (:queue, '', :starts)
ON CONFLICT (queue, key) DO UPDATE SET starts = excluded.starts;

-- name: rate_window_holds_back
-- After a claim filled a queue's window: is a due job of the queue still waiting for it?
SELECT EXISTS (SELECT 1 FROM aiojobs_jobs
               WHERE state IN ('waiting', 'snoozed') AND queue = :queue AND available_at <= :now);

-- name: key_full
-- A fragment of the keyed claims (after WITH); see PostgreSQL's twin.
held AS MATERIALIZED (
    SELECT concurrency_key AS key, count(*) AS n FROM aiojobs_jobs
    WHERE queue = :queue AND state IN ('claimed', 'running') AND concurrency_key IS NOT NULL
    GROUP BY concurrency_key
),
full_keys AS MATERIALIZED (
    SELECT key FROM held WHERE n >= coalesce(:per_key, 2147483647)
    UNION
    SELECT key FROM aiojobs_rate_windows
    WHERE queue = :queue AND key <> '' AND json_array_length(starts) >= :rate_n
      AND starts ->> ('$[#-' || :rate_n || ']') > :opened_after
    UNION
    SELECT value FROM json_each(:excluded)
)

-- name: key_candidates
-- A queue with per-key limits, in the claim's write transaction (see PostgreSQL's twin). The
-- page has no ORDER BY of its own: the subquery's rows come in the index's order through a
-- co-routine, and a sort would read the whole budget before the LIMIT stops it.
WITH
-- include: key_full
, page AS MATERIALIZED (
    SELECT j.id, j.concurrency_key AS key, coalesce((SELECT h.n FROM held AS h WHERE h.key = j.concurrency_key), 0) AS held
    FROM (SELECT id, concurrency_key FROM aiojobs_jobs
          WHERE state IN ('waiting', 'snoozed') AND queue = :queue AND available_at <= :now
          ORDER BY priority, available_at, id
          LIMIT :budget) AS j
    WHERE j.concurrency_key IS NULL OR j.concurrency_key NOT IN (SELECT key FROM full_keys)
    LIMIT :scan
)
SELECT * FROM page
UNION ALL
SELECT NULL, NULL, CASE WHEN (SELECT count(*) FROM page) < :scan THEN (
    SELECT count(*) FROM (SELECT 1 FROM aiojobs_jobs
                          WHERE state IN ('waiting', 'snoozed') AND queue = :queue AND available_at <= :now
                          ORDER BY priority, available_at, id
                          LIMIT :budget)) END;

-- name: key_candidates_loose
-- Past a backlog of full keys, key by key from :after, :steps keys at most (see PostgreSQL's
-- twin). SQLite has no LATERAL: each key's first due jobs come through a correlated IN.
WITH RECURSIVE
-- include: key_full
, keys(key, step) AS (
    SELECT (SELECT concurrency_key FROM aiojobs_jobs
            WHERE state IN ('waiting', 'snoozed') AND queue = :queue AND concurrency_key IS NOT NULL
              AND concurrency_key > :after AND available_at <= :now
            ORDER BY concurrency_key LIMIT 1), 1
    UNION ALL
    SELECT (SELECT j.concurrency_key FROM aiojobs_jobs AS j
            WHERE j.state IN ('waiting', 'snoozed') AND j.queue = :queue
              AND j.concurrency_key IS NOT NULL AND j.concurrency_key > k.key AND j.available_at <= :now
            ORDER BY j.concurrency_key LIMIT 1), k.step + 1
    FROM keys AS k WHERE k.key IS NOT NULL AND k.step < :steps
),
page AS MATERIALIZED (
    SELECT d.id, d.concurrency_key AS key, coalesce((SELECT h.n FROM held AS h WHERE h.key = d.concurrency_key), 0) AS held
    FROM keys AS k JOIN aiojobs_jobs AS d ON d.id IN (
        SELECT id FROM aiojobs_jobs
        WHERE state IN ('waiting', 'snoozed') AND queue = :queue AND concurrency_key = k.key AND available_at <= :now
        ORDER BY priority, available_at, id
        LIMIT :take)
    WHERE k.key IS NOT NULL AND k.key NOT IN (SELECT key FROM full_keys)
    LIMIT :scan
)
SELECT * FROM page
UNION ALL
SELECT NULL,
       CASE WHEN (SELECT count(*) FROM page) < :scan
            THEN (SELECT key FROM keys WHERE key IS NOT NULL ORDER BY step DESC LIMIT 1) END,
       CASE WHEN (SELECT count(*) FROM page) < :scan
            THEN (SELECT count(*) FROM keys WHERE key IS NULL) END;

-- name: key_window_first_opening
-- The oldest start still counted by a full per-key window of the queue (see PostgreSQL's twin).
SELECT min(starts ->> ('$[#-' || :rate_n || ']')) AS oldest FROM aiojobs_rate_windows
WHERE queue = :queue AND key <> '' AND json_array_length(starts) >= :rate_n
  AND starts ->> ('$[#-' || :rate_n || ']') > :opened_after;

-- name: job_claim_picked
-- The picks of a keyed claim (job_claim's update, by id): those still pending are claimed,
-- and started at once when :start_all (the claim is the start a rate limit counts) or their
-- job is named in start_now.
UPDATE aiojobs_jobs
SET state = CASE WHEN :start_all OR name IN (SELECT value FROM json_each(:start_now)) THEN 'running'
                 ELSE 'claimed' END,
    attempt = attempt + (:start_all OR name IN (SELECT value FROM json_each(:start_now))),
    attempted_at = CASE WHEN :start_all OR name IN (SELECT value FROM json_each(:start_now)) THEN :now
                        ELSE attempted_at END,
    claimed_by = :engine_id,
    claimed_at = :now,
    claim_token = lower(hex(randomblob(16)))
WHERE id IN (SELECT value FROM json_each(:ids)) AND state IN ('waiting', 'snoozed')
  AND (:incarnation IS NULL OR EXISTS (
      SELECT 1 FROM aiojobs_engines
      WHERE id = :engine_id AND incarnation = :incarnation AND heartbeat_at >= :fresh_since))
RETURNING *;

-- name: key_windows
SELECT key, starts FROM aiojobs_rate_windows
WHERE queue = :queue AND key IN (SELECT value FROM json_each(:keys));

-- name: key_window_write
-- :batch is [[key, starts], ...], starts a JSON array of microseconds.
INSERT INTO aiojobs_rate_windows (queue, key, starts)
SELECT :queue, value ->> 0, json(value -> 1) FROM json_each(:batch) WHERE true
ON CONFLICT (queue, key) DO UPDATE SET starts = excluded.starts;

-- name: key_windows_prune
-- Per-key windows whose newest start left the window (or whose queue has no per-key rate
-- limit any more) hold nothing a claim would count: deleted by the maintenance sweep.
DELETE FROM aiojobs_rate_windows AS w
WHERE w.key <> '' AND NOT EXISTS (
    SELECT 1 FROM aiojobs_queues AS q
    WHERE q.name = w.queue AND q.rate_limit_per_key IS NOT NULL
      AND w.starts ->> '$[#-1]' >= :now - CAST(q.rate_period_per_key * 1000000 AS INTEGER));

-- name: rate_window_delete
-- :keyed NULL: every window of the queue; 1: its keys' windows; 0: the queue's own.
DELETE FROM aiojobs_rate_windows WHERE queue = :queue AND (:keyed IS NULL OR (key <> '') = :keyed);

-- name: queue_running_counts
SELECT queue, count(*) AS n FROM aiojobs_jobs
WHERE state IN ('claimed', 'running') AND queue IN (SELECT value FROM json_each(:queues))
GROUP BY queue;

-- name: queue_delete
-- The check and the delete are one statement under SQLite's one writer, so no job can be
-- inserted into the queue between them.
DELETE FROM aiojobs_queues
WHERE name = :name AND NOT EXISTS (SELECT 1 FROM aiojobs_jobs WHERE queue = :name)
RETURNING name;

-- name: engine_register
INSERT INTO aiojobs_engines (id, incarnation, host, pid, queues, started_at, heartbeat_at)
VALUES (:id, :incarnation, :host, :pid, :queues, :now, :now)
ON CONFLICT (id) DO UPDATE
SET incarnation = excluded.incarnation, host = excluded.host, pid = excluded.pid,
    queues = excluded.queues, started_at = excluded.started_at,
    heartbeat_at = excluded.heartbeat_at
WHERE aiojobs_engines.heartbeat_at < :stale_before
   OR (aiojobs_engines.incarnation = :takeover AND aiojobs_engines.heartbeat_at < :quiet_before)
RETURNING id;

-- name: engine_heartbeat
UPDATE aiojobs_engines SET heartbeat_at = :now
WHERE id = :id AND incarnation = :incarnation
RETURNING id;

-- name: engine_revive
INSERT INTO aiojobs_engines (id, incarnation, host, pid, queues, started_at, heartbeat_at)
VALUES (:id, :incarnation, :host, :pid, :queues, :now, :now)
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: engine_get
SELECT * FROM aiojobs_engines WHERE id = :id;

-- name: engine_list
SELECT * FROM aiojobs_engines ORDER BY id;

-- name: engine_unregister
DELETE FROM aiojobs_engines WHERE id = :id AND incarnation = :incarnation RETURNING id;

-- name: cron_upsert
-- A schedule's definition; its progress (last_tick, last_job_id) and paused state are kept.
-- A new schedule starts from now: its first run is its next tick, not a missed one.
INSERT INTO aiojobs_cron (name, expression, timezone, job, args, kwargs, options, last_tick,
                          created_at, updated_at)
VALUES (:name, :expression, :timezone, :job, :args, :kwargs, :options, :now, :now, :now)
ON CONFLICT (name) DO UPDATE
SET expression = excluded.expression, timezone = excluded.timezone, job = excluded.job,
    args = excluded.args, kwargs = excluded.kwargs, options = excluded.options,
    updated_at = excluded.updated_at
RETURNING *;

-- name: cron_delete
DELETE FROM aiojobs_cron WHERE name = :name RETURNING name;

-- name: cron_pause
UPDATE aiojobs_cron SET paused = :paused, updated_at = :now WHERE name = :name RETURNING *;

-- name: cron_list
SELECT * FROM aiojobs_cron ORDER BY name;

-- name: cron_advance
-- After the tick's job is stored (or found already stored by another engine).
UPDATE aiojobs_cron SET last_tick = :tick, last_job_id = coalesce(:job_id, last_job_id)
WHERE name = :name AND (last_tick IS NULL OR last_tick < :tick);

-- name: job_activity
-- Completed and failed jobs per queue per bucket since :since (the dashboard's chart).
SELECT queue, (finished_at / :bucket) * :bucket AS start,
       sum(state = 'completed') AS completed, sum(state = 'failed') AS failed
FROM (SELECT queue, state, coalesce(completed_at, failed_at) AS finished_at FROM aiojobs_jobs
      WHERE (state = 'completed' AND completed_at >= :since) OR (state = 'failed' AND failed_at >= :since))
GROUP BY queue, start
ORDER BY start, queue;
