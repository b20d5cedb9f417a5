-- PostgreSQL statements of the backend, named as their SQLite twins where the statement is
-- the same. Parameters are written :name and become $n when loaded; each is cast where it
-- is used, so every prepared statement has fixed parameter types. __schema__ (the quoted
-- schema) and __channel__ (the notification channel, a literal) are filled in at load.
--
-- :now NULL means the database clock: coalesce(:now, now()) everywhere.
-- Batches arrive as one array per column and are read with unnest(), so a batch of any
-- size is one statement and one round trip.
--
-- Dialect notes:
-- * The claim selects with FOR UPDATE SKIP LOCKED: engines claiming at once skip each
--   other's rows instead of waiting (SQLite serialises writers instead).
-- * Notifications (pg_notify) are sent by the statements that cause them, so they are part
--   of the same transaction: delivered at commit, and never if it rolls back. PostgreSQL
--   also folds identical payloads sent in one transaction into one.
-- * Tokens are compared as text (claim_token::text = :token): a malformed token simply does
--   not match, where a cast to uuid would fail the whole batch. The id drives the lookup.

-- name: job_insert
-- One job. The CTE registers its queue and notifies listeners (a data-modifying CTE always
-- runs to completion, whatever the outer statement reads). What comes back is what the
-- database chose (id, times) and, when :stored_json is true, the JSON columns as jsonb
-- stored them, as text so that a caller's connection with its own jsonb codec
-- (transactional enqueue) reads them alike. jsonb writes a number with an exponent out in
-- full (1e+20 comes back as an integer), so the backend asks for them when a document has
-- one; otherwise the insert's own JSON decodes to the same values and nothing more is sent.
WITH registered AS (
    INSERT INTO __schema__.aiojobs_queues (name, updated_at)
    SELECT :queue::text, coalesce(:now::timestamptz, now())
    FROM pg_notify(__channel__, 'enqueued:' || :queue::text)
    ON CONFLICT (name) DO NOTHING
)
INSERT INTO __schema__.aiojobs_jobs (queue, name, args, kwargs, constructor_args, meta, retry,
                                     priority, max_attempts, timeout, inserted_at, available_at,
                                     unique_key, unique_states, rescheduled_from, keep_completed,
                                     keep_failed, keep_canceled, concurrency_key)
VALUES (:queue::text, :name::text, :args::text::jsonb, :kwargs::text::jsonb,
        :constructor_args::text::jsonb, :meta::text::jsonb, :retry::text::jsonb,
        :priority::integer, :max_attempts::integer, :timeout::float8,
        coalesce(:now::timestamptz, now()),
        coalesce(:run_at::timestamptz,
                 coalesce(:now::timestamptz, now()) + make_interval(secs => coalesce(:delay::float8, 0))),
        :unique_key::text, :unique_states::text, :rescheduled_from::bigint, :keep_completed::float8,
        :keep_failed::float8, :keep_canceled::float8, :concurrency_key::text)
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND strpos(unique_states, ',' || state || ',') > 0
DO NOTHING
RETURNING id, unique_key, inserted_at, available_at,
          CASE WHEN :stored_json::boolean THEN args::text END AS args,
          CASE WHEN :stored_json::boolean THEN kwargs::text END AS kwargs,
          CASE WHEN :stored_json::boolean THEN constructor_args::text END AS constructor_args,
          CASE WHEN :stored_json::boolean THEN meta::text END AS meta,
          CASE WHEN :stored_json::boolean THEN retry::text END AS retry;

-- name: job_insert_many
-- Many jobs, in the order given (ids are drawn in ORDER BY ord order); one notification and
-- one queue registration per distinct queue of the batch. Returned as job_insert's rows, in
-- no particular order (the backend sorts them by id). Empty kwargs, constructor_args and
-- meta arrive as NULL (a column empty in every job as one NULL array), so that the common
-- batch sends and parses none of them.
WITH batch AS (
    SELECT *
    FROM unnest(:queue::text[], :name::text[], :args::text[], :kwargs::text[],
                :constructor_args::text[], :meta::text[], :retry::text[], :priority::integer[],
                :max_attempts::integer[], :timeout::float8[], :delay::float8[],
                :run_at::timestamptz[], :unique_key::text[], :unique_states::text[],
                :rescheduled_from::bigint[], :keep_completed::float8[], :keep_failed::float8[],
                :keep_canceled::float8[], :concurrency_key::text[])
         WITH ORDINALITY AS b(queue, name, args, kwargs, constructor_args, meta, retry, priority,
                              max_attempts, timeout, delay, run_at, unique_key, unique_states,
                              rescheduled_from, keep_completed, keep_failed, keep_canceled,
                              concurrency_key, ord)
),
registered AS (
    INSERT INTO __schema__.aiojobs_queues (name, updated_at)
    SELECT q.queue, coalesce(:now::timestamptz, now())
    FROM (SELECT DISTINCT queue FROM batch) AS q,
         pg_notify(__channel__, 'enqueued:' || q.queue)
    ON CONFLICT (name) DO NOTHING
),
inserted AS (
    INSERT INTO __schema__.aiojobs_jobs (queue, name, args, kwargs, constructor_args, meta, retry,
                                         priority, max_attempts, timeout, inserted_at,
                                         available_at, unique_key, unique_states, rescheduled_from,
                                         keep_completed, keep_failed, keep_canceled, concurrency_key)
    SELECT queue, name, args::jsonb, coalesce(kwargs::jsonb, '{}'),
           coalesce(constructor_args::jsonb, '[]'), coalesce(meta::jsonb, '{}'), retry::jsonb, priority, max_attempts, timeout, coalesce(:now::timestamptz, now()),
           coalesce(run_at,
                    coalesce(:now::timestamptz, now()) + make_interval(secs => coalesce(delay, 0))),
           unique_key, unique_states, rescheduled_from, keep_completed, keep_failed, keep_canceled,
           concurrency_key
    FROM batch
    ORDER BY ord
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND strpos(unique_states, ',' || state || ',') > 0
    DO NOTHING
    RETURNING id, unique_key, inserted_at, available_at,
              CASE WHEN :stored_json::boolean THEN args::text END AS args,
              CASE WHEN :stored_json::boolean THEN kwargs::text END AS kwargs,
              CASE WHEN :stored_json::boolean THEN constructor_args::text END AS constructor_args,
              CASE WHEN :stored_json::boolean THEN meta::text END AS meta,
              CASE WHEN :stored_json::boolean THEN retry::text END AS retry
)
SELECT * FROM inserted;

-- name: job_unique_holders
-- The jobs holding these unique keys now (the ones a conflicting insert ran into).
SELECT id, queue, name, args::text AS args, kwargs::text AS kwargs,
       constructor_args::text AS constructor_args, state, priority, attempt, max_attempts,
       timeout, retry::text AS retry, inserted_at, available_at, claimed_at, attempted_at,
       completed_at, failed_at, canceled_at, claimed_by, claim_token::text AS claim_token,
       cancel_requested, result::text AS result, errors::text AS errors, unique_key,
       rescheduled_from, meta::text AS meta, concurrency_key
FROM __schema__.aiojobs_jobs
WHERE unique_key = ANY(:keys::text[]) AND strpos(unique_states, ',' || state || ',') > 0;

-- name: job_unique_replace
-- Free these keys for newer jobs: cancel the jobs holding them that have not started, and
-- those running since before their stuck_before (stuck; their engine is told to stop them);
-- a job running for less is left alone (the newer job then yields to it). A replaced job
-- stops holding its key even if its unique states include canceled (its replacement is
-- inserted next, in the same transaction).
WITH replaced AS (
    UPDATE __schema__.aiojobs_jobs AS j
    SET state = 'canceled',
        unique_states = replace(j.unique_states, ',canceled,', ','),
        canceled_at = coalesce(:now::timestamptz, now()),
        expires_at = __schema__.aiojobs_expires_at(
            coalesce(:now::timestamptz, now()), 'canceled', -1, -1,
            coalesce(j.keep_canceled, q.keep_canceled, :keep_canceled::float8)),
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'name', 'Replaced', 'message', 'replaced by a newer job with the same unique key',
            'traceback', NULL, 'attempt', j.attempt, 'attempted_by', NULL, 'attempted_at', NULL)),
        claim_token = NULL,
        cancel_requested = false
    FROM unnest(:keys::text[], :stuck_before::timestamptz[]) AS r(key, stuck_before),
         __schema__.aiojobs_queues AS q
    WHERE j.unique_key = r.key AND q.name = j.queue
      AND strpos(j.unique_states, ',' || j.state || ',') > 0
      AND (j.state IN ('waiting', 'snoozed', 'claimed')
           OR (j.state = 'running' AND j.attempted_at < r.stuck_before))
    RETURNING j.id, j.claimed_by, j.attempted_at
)
SELECT id, claimed_by,
       CASE WHEN attempted_at IS NOT NULL THEN pg_notify(__channel__, 'cancel:' || id) END AS notified
FROM replaced;

-- name: job_get
SELECT * FROM __schema__.aiojobs_jobs WHERE id = :id::bigint;

-- name: job_list
SELECT * FROM __schema__.aiojobs_jobs
WHERE (:states::text[] IS NULL OR state = ANY(:states::text[]))
  AND (:queues::text[] IS NULL OR queue = ANY(:queues::text[]))
  AND (:names::text[] IS NULL OR name = ANY(:names::text[]))
  AND (:before_id::bigint IS NULL OR id < :before_id::bigint)
  -- strict: lax mode would also yield each array's elements a second time, unwrapped.
  AND (:search::text IS NULL OR EXISTS (
      SELECT 1 FROM jsonb_path_query(jsonb_build_array(args, kwargs, constructor_args, meta), 'strict $.**') AS v
      WHERE jsonb_typeof(v) IN ('string', 'number') AND strpos(lower(v #>> '{}'), lower(:search::text)) > 0))
ORDER BY id DESC
LIMIT :limit::integer;

-- name: job_claim
-- Every demand in one statement: per queue, a LATERAL index scan of the claim index in
-- (priority, available_at, id) order, stopped at the demand's limit, skipping rows other
-- engines hold. A capped demand (global_limit) also leaves room for the queue's jobs held
-- anywhere: its caller has taken queue_lock_claims in the same transaction, so this count,
-- read by a later statement than the lock, sees every claim committed before it.
-- Picks whose job is named in start_now start at once ('running', attempt counted), and so
-- does every pick of a queue in start_queues (a rate-limited queue: the claim is the start
-- its limit counts); the others are 'claimed', to be started by job_write_many. The picks are materialised once,
-- then updated by primary key (= ANY(ARRAY(...)) is evaluated once, so the planner never
-- weighs a join); rows come back in demand order, then job order.
WITH picked AS MATERIALIZED (
    SELECT p.id, p.name = ANY(:start_now::text[]) OR d.queue = ANY(:start_queues::text[]) AS starts
    FROM (
        SELECT d.queue,
               CASE WHEN d.global_limit IS NULL THEN d.lim
                    ELSE least(d.lim, greatest(0, d.global_limit - (
                             SELECT count(*) FROM __schema__.aiojobs_jobs AS h
                             WHERE h.state IN ('claimed', 'running') AND h.queue = d.queue)))
               END AS lim
        FROM unnest(:queues::text[], :limits::integer[], :global_limits::integer[])
             AS d(queue, lim, global_limit)
    ) AS d
    CROSS JOIN LATERAL (
        SELECT j.id, j.name FROM __schema__.aiojobs_jobs AS j
        WHERE j.queue = d.queue
          AND j.state IN ('waiting', 'snoozed')
          AND j.available_at <= coalesce(:now::timestamptz, now())
        ORDER BY j.priority, j.available_at, j.id
        LIMIT d.lim
        FOR UPDATE SKIP LOCKED
    ) AS p
),
starting AS MATERIALIZED (
    -- "every": the common claim, where every pick starts, searches no ids array per row
    -- (docs/decisions/2026-12-06-claim-every-fast-path.md).
    SELECT coalesce(bool_and(starts), false) AS every,
           coalesce(array_agg(id) FILTER (WHERE starts), '{}') AS ids
    FROM picked
),
claimed AS (
    UPDATE __schema__.aiojobs_jobs AS j
    SET state = CASE WHEN s.every OR j.id = ANY(s.ids) THEN 'running' ELSE 'claimed' END,
        attempt = j.attempt + CASE WHEN s.every OR j.id = ANY(s.ids) THEN 1 ELSE 0 END,
        attempted_at = CASE WHEN s.every OR j.id = ANY(s.ids)
                            THEN coalesce(:now::timestamptz, now()) ELSE j.attempted_at END,
        claimed_by = :engine_id::text,
        claimed_at = coalesce(:now::timestamptz, now()),
        claim_token = gen_random_uuid()
    FROM starting AS s
    WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
      -- Only while this engine's row holds this incarnation and a fresh heartbeat: an
      -- engine that others may be about to declare dead takes nothing new.
      AND (:incarnation::text IS NULL OR EXISTS (
          SELECT FROM __schema__.aiojobs_engines AS e
          WHERE e.id = :engine_id::text AND e.incarnation = :incarnation::text
            AND e.heartbeat_at >= coalesce(:now::timestamptz, now())
                                  - make_interval(secs => coalesce(:fresh_within::float8, 0))))
    RETURNING j.*
)
SELECT * FROM claimed
ORDER BY array_position(:queues::text[], queue), priority, available_at, id;

-- name: rate_windows
-- Read under the queues' claim locks: their windows' starts.
SELECT queue, starts FROM __schema__.aiojobs_rate_windows WHERE key = '' AND queue = ANY(:queues::text[]);

-- name: rate_window_write
INSERT INTO __schema__.aiojobs_rate_windows (queue, key, starts)
VALUES (:queue::text, '', :starts::timestamptz[])
ON CONFLICT (queue, key) DO UPDATE SET starts = excluded.starts;

-- name: rate_window_holds_back
-- After a claim filled a queue's window: is a due job of the queue still waiting for it?
SELECT EXISTS (SELECT FROM __schema__.aiojobs_jobs
               WHERE queue = :queue::text AND state IN ('waiting', 'snoozed')
                 AND available_at <= :now::timestamptz);

-- name: key_full
-- A fragment of the keyed claims (after WITH): what each key of the queue holds, and the
-- keys that are full: at their concurrency (counted from the held-keys index), their window
-- full (n starts newer than :opened_after; starts are kept sorted), or found full by this
-- claim (:excluded).
held AS MATERIALIZED (
    SELECT concurrency_key AS key, count(*) AS n FROM __schema__.aiojobs_jobs
    WHERE queue = :queue::text AND state IN ('claimed', 'running') AND concurrency_key IS NOT NULL
    GROUP BY concurrency_key
),
full_keys AS MATERIALIZED (
    SELECT key FROM held WHERE n >= coalesce(:per_key::integer, 2147483647)
    UNION
    SELECT key FROM __schema__.aiojobs_rate_windows
    WHERE queue = :queue::text AND key <> '' AND cardinality(starts) >= :rate_n::integer
      AND starts[cardinality(starts) - :rate_n::integer + 1] > :opened_after::timestamptz
    UNION
    SELECT unnest(:excluded::text[])
)

-- name: key_candidates
-- A queue with per-key limits, under its claim lock: of its first :budget due jobs in claim
-- order (the claim index), those whose key is not full, each with what its key holds. When
-- fewer than :scan come back, a last row (NULL id) says how many due jobs the budget held:
-- all of it means more lie beyond (behind a busy key's backlog, say), and the claim then
-- looks key by key (key_candidates_loose). (The count walks the claim index: its ORDER BY
-- keeps the planner from a scan of the whole table.) What a key holds is looked up per row, not
-- joined, so that the scan stays in index order and stops at :scan.
WITH
-- include: key_full
, page AS MATERIALIZED (
    SELECT j.id, j.concurrency_key AS key, coalesce((SELECT h.n FROM held AS h WHERE h.key = j.concurrency_key), 0) AS held
    FROM (SELECT id, concurrency_key, priority, available_at FROM __schema__.aiojobs_jobs
          WHERE queue = :queue::text AND state IN ('waiting', 'snoozed')
            AND available_at <= coalesce(:now::timestamptz, now())
          ORDER BY priority, available_at, id
          LIMIT :budget::integer) AS j
    WHERE j.concurrency_key IS NULL OR j.concurrency_key NOT IN (SELECT key FROM full_keys)
    ORDER BY j.priority, j.available_at, j.id
    LIMIT :scan::integer
)
SELECT * FROM page
UNION ALL
SELECT NULL, NULL, CASE WHEN (SELECT count(*) FROM page) < :scan::integer THEN (
    SELECT count(*) FROM (SELECT FROM __schema__.aiojobs_jobs
                          WHERE queue = :queue::text AND state IN ('waiting', 'snoozed')
                            AND available_at <= coalesce(:now::timestamptz, now())
                          ORDER BY priority, available_at, id
                          LIMIT :budget::integer) AS budget) END;

-- name: key_candidates_loose
-- Past a backlog of full keys: a loose scan of the due-keys index, one step per distinct key
-- with a due job after :after (a recursive CTE), :steps keys at most, and the first :take due
-- jobs of each key not full, in key order, until :scan are found. The recursion is evaluated
-- only as far as the page reads it, so a walk costs the full keys it steps over plus what it
-- takes, however deep any backlog. A key with no job due is passed inside the step that
-- finds the next one. When the page is short, a last row (NULL id) gives the last key the
-- walk reached and whether it reached the end of the keys (1) or its :steps (0). Jobs with no
-- key are not in that index: they come from key_candidates only.
WITH RECURSIVE
-- include: key_full
, keys AS (
    -- A row even when no key follows (a NULL key): the end of the keys, as every step's.
    SELECT (SELECT concurrency_key FROM __schema__.aiojobs_jobs
            WHERE queue = :queue::text AND state IN ('waiting', 'snoozed') AND concurrency_key IS NOT NULL
              AND concurrency_key > :after::text AND available_at <= coalesce(:now::timestamptz, now())
            ORDER BY concurrency_key LIMIT 1) AS key, 1 AS step
    UNION ALL
    SELECT (SELECT j.concurrency_key FROM __schema__.aiojobs_jobs AS j
            WHERE j.queue = :queue::text AND j.state IN ('waiting', 'snoozed')
              AND j.concurrency_key IS NOT NULL AND j.concurrency_key > k.key
              AND j.available_at <= coalesce(:now::timestamptz, now())
            ORDER BY j.concurrency_key LIMIT 1), k.step + 1
    FROM keys AS k WHERE k.key IS NOT NULL AND k.step < :steps::integer
),
page AS MATERIALIZED (
    SELECT d.id, d.concurrency_key AS key,
           coalesce((SELECT h.n FROM held AS h WHERE h.key = d.concurrency_key), 0) AS held
    FROM keys AS k
    CROSS JOIN LATERAL (
        SELECT id, concurrency_key FROM __schema__.aiojobs_jobs
        WHERE queue = :queue::text AND state IN ('waiting', 'snoozed') AND concurrency_key = k.key
          AND available_at <= coalesce(:now::timestamptz, now())
        ORDER BY priority, available_at, id
        LIMIT :take::integer
    ) AS d
    WHERE k.key IS NOT NULL AND k.key NOT IN (SELECT key FROM full_keys)
    LIMIT :scan::integer
)
SELECT * FROM page
UNION ALL
SELECT NULL,
       CASE WHEN (SELECT count(*) FROM page) < :scan::integer
            THEN (SELECT key FROM keys WHERE key IS NOT NULL ORDER BY step DESC LIMIT 1) END,
       CASE WHEN (SELECT count(*) FROM page) < :scan::integer
            THEN (SELECT count(*) FROM keys WHERE key IS NULL) END;

-- name: key_window_first_opening
-- The oldest start still counted by a full per-key window of the queue: the first of them
-- to open again opens then (plus the window).
SELECT min(starts[cardinality(starts) - :rate_n::integer + 1]) AS oldest
FROM __schema__.aiojobs_rate_windows
WHERE queue = :queue::text AND key <> '' AND cardinality(starts) >= :rate_n::integer
  AND starts[cardinality(starts) - :rate_n::integer + 1] > :opened_after::timestamptz;

-- name: job_claim_picked
-- The picks of a keyed claim (job_claim's update, by id): those still pending are claimed,
-- and started at once when :start_all (the claim is the start a rate limit counts) or their
-- job is named in start_now. A pick another transaction holds (an operator's cancel, say)
-- is skipped, not waited for, as job_claim skips it. The time is read by this statement
-- (clock_timestamp(), once), after its snapshot: later than the end of every job whose key
-- the picks saw free, so the records never show two jobs of a key overlapping.
WITH free AS MATERIALIZED (
    -- Driven by the ids (a primary-key lookup each, whatever stale statistics say).
    SELECT j.id FROM unnest(:ids::bigint[]) AS p(id)
    JOIN __schema__.aiojobs_jobs AS j ON j.id = p.id
    WHERE j.state IN ('waiting', 'snoozed')
    FOR UPDATE OF j SKIP LOCKED
),
at AS MATERIALIZED (
    SELECT coalesce(:now::timestamptz, clock_timestamp()) AS now
)
UPDATE __schema__.aiojobs_jobs AS j
SET state = CASE WHEN :start_all::boolean OR j.name = ANY(:start_now::text[]) THEN 'running' ELSE 'claimed' END,
    attempt = j.attempt + CASE WHEN :start_all::boolean OR j.name = ANY(:start_now::text[]) THEN 1 ELSE 0 END,
    attempted_at = CASE WHEN :start_all::boolean OR j.name = ANY(:start_now::text[])
                        THEN at.now ELSE j.attempted_at END,
    claimed_by = :engine_id::text,
    claimed_at = at.now,
    claim_token = gen_random_uuid()
FROM at
WHERE j.id = ANY(ARRAY(SELECT id FROM free))
  AND (:incarnation::text IS NULL OR EXISTS (
      SELECT FROM __schema__.aiojobs_engines AS e
      WHERE e.id = :engine_id::text AND e.incarnation = :incarnation::text
        AND e.heartbeat_at >= at.now - make_interval(secs => coalesce(:fresh_within::float8, 0))))
RETURNING j.*;

-- name: key_windows
SELECT key, starts FROM __schema__.aiojobs_rate_windows
WHERE queue = :queue::text AND key = ANY(:keys::text[]);

-- name: key_window_write
-- Each key's starts arrive as an array literal ('{...}'): arrays of arrays must be of one length.
INSERT INTO __schema__.aiojobs_rate_windows (queue, key, starts)
SELECT :queue::text, w.key, w.starts::timestamptz[]
FROM unnest(:keys::text[], :starts::text[]) AS w(key, starts)
ON CONFLICT (queue, key) DO UPDATE SET starts = excluded.starts;

-- name: key_windows_prune
-- Per-key windows whose newest start left the window (or whose queue has no per-key rate
-- limit any more) hold nothing a claim would count: deleted by the maintenance sweep.
DELETE FROM __schema__.aiojobs_rate_windows AS w
WHERE w.key <> '' AND NOT EXISTS (
    SELECT FROM __schema__.aiojobs_queues AS q
    WHERE q.name = w.queue AND q.rate_limit_per_key IS NOT NULL
      AND w.starts[array_upper(w.starts, 1)] >= coalesce(:now::timestamptz, now())
                                               - make_interval(secs => q.rate_period_per_key));

-- name: rate_window_delete
-- :keyed NULL: every window of the queue; true: its keys' windows; false: the queue's own.
DELETE FROM __schema__.aiojobs_rate_windows
WHERE queue = :queue::text AND (:keyed::boolean IS NULL OR (key <> '') = :keyed::boolean);

-- name: queue_lock_claims
-- Serialises claims of capped queues across engines until the transaction ends. Keys come
-- sorted, so two engines locking several queues take them in one order (no deadlock).
-- The claims' connection commits without waiting for the disk, but a capped claim must
-- not be undone by a server crash while its jobs run (the cap would count them no more):
-- this transaction commits durably.
-- Then the claim's time, read once the locks are held (clock_timestamp(), not now(), which
-- is when the transaction began, before the wait): the time of locked claims only grows,
-- lock holder after lock holder, and their records start after what the last holder ended.
WITH locked AS MATERIALIZED (
    SELECT pg_advisory_xact_lock(hashtextextended(k.key, 0)), set_config('synchronous_commit', 'on', true)
    FROM unnest(:keys::text[]) AS k(key)
)
SELECT coalesce(:now::timestamptz, clock_timestamp()) AS now FROM (SELECT count(*) FROM locked) AS l;

-- name: job_write_many
-- The engine's batched writes in one statement: starts of claimed jobs, and outcomes
-- (updates and deletions; SQLite: job_start_many, job_finish_many and job_delete_fenced).
-- Every part is fenced by id and token, outcomes also by the expected state, and each part
-- touches its own jobs (a job is started, or finished, never both in one batch). Rows come
-- back tagged: 's' a start (with the attempt it counts), 'f' an accepted outcome.
WITH started AS (
    -- "j.id = ANY(:start_ids)" gives the planner a primary-key lookup to start from whatever
    -- the (often stale) statistics say about how many jobs are claimed. Idempotent: a start
    -- sent again after its reply was lost finds the job running under the same token and
    -- returns it without counting the attempt twice.
    UPDATE __schema__.aiojobs_jobs AS j
    SET state = 'running',
        attempt = CASE WHEN j.state = 'claimed' THEN j.attempt + 1 ELSE j.attempt END,
        attempted_at = CASE WHEN j.state = 'claimed' THEN coalesce(:now::timestamptz, now())
                            ELSE j.attempted_at END
    FROM unnest(:start_ids::bigint[], :start_tokens::text[]) AS s(id, token)
    WHERE j.id = ANY(:start_ids::bigint[]) AND j.id = s.id AND j.claim_token::text = s.token
      AND j.state IN ('claimed', 'running')
    RETURNING j.id, j.attempt, j.attempted_at
),
outcome AS (
    SELECT *
    FROM unnest(:ids::bigint[], :tokens::text[], :from_states::text[], :states::text[],
                :results::text[], :errors::text[], :delays::float8[], :give_backs::integer[],
                :deletes::boolean[])
         AS o(id, token, from_state, state, result, error, delay, give_back, remove)
),
finished AS (
    -- A cancellation asked for while the attempt ran wins over going back to waiting/snoozed.
    -- A NULL delay keeps available_at: a job handed back (shutdown) keeps its place in line,
    -- ahead of jobs of its priority made available after it.
    UPDATE __schema__.aiojobs_jobs AS j
    SET state = CASE WHEN j.cancel_requested AND o.state IN ('waiting', 'snoozed') THEN 'canceled'
                     ELSE o.state END,
        result = CASE WHEN o.state = 'completed' THEN o.result::jsonb ELSE j.result END,
        errors = CASE WHEN o.error IS NULL THEN j.errors
                      ELSE j.errors || jsonb_build_array(o.error::jsonb) END,
        available_at = CASE WHEN o.delay IS NULL THEN j.available_at
                            ELSE coalesce(:now::timestamptz, now()) + make_interval(secs => o.delay) END,
        attempt = j.attempt - o.give_back,
        completed_at = CASE WHEN o.state = 'completed' THEN coalesce(:now::timestamptz, now())
                            ELSE j.completed_at END,
        failed_at = CASE WHEN o.state = 'failed' THEN coalesce(:now::timestamptz, now())
                         ELSE j.failed_at END,
        canceled_at = CASE WHEN o.state = 'canceled'
                                OR (j.cancel_requested AND o.state IN ('waiting', 'snoozed'))
                           THEN coalesce(:now::timestamptz, now()) ELSE j.canceled_at END,
        expires_at = __schema__.aiojobs_expires_at(
            coalesce(:now::timestamptz, now()),
            CASE WHEN j.cancel_requested AND o.state IN ('waiting', 'snoozed') THEN 'canceled'
                 ELSE o.state END,
            coalesce(j.keep_completed, q.keep_completed, :keep_completed::float8),
            coalesce(j.keep_failed, q.keep_failed, :keep_failed::float8),
            coalesce(j.keep_canceled, q.keep_canceled, :keep_canceled::float8)),
        claim_token = NULL,
        cancel_requested = false
    FROM outcome AS o, __schema__.aiojobs_queues AS q
    WHERE NOT o.remove AND j.id = o.id AND j.claim_token::text = o.token AND j.state = o.from_state
      AND q.name = j.queue
    RETURNING j.id, j.queue, j.concurrency_key IS NOT NULL AND q.concurrency_per_key IS NOT NULL AS frees
),
deleted AS (
    DELETE FROM __schema__.aiojobs_jobs AS j
    USING outcome AS o, __schema__.aiojobs_queues AS q
    WHERE o.remove AND j.id = o.id AND j.claim_token::text = o.token AND j.state = o.from_state
      AND q.name = j.queue
    RETURNING j.id, j.queue, j.concurrency_key IS NOT NULL AND q.concurrency_per_key IS NOT NULL AS frees
)
-- The end of a keyed job of a queue with per-key concurrency frees a place of its key:
-- engines whose claims left that key's jobs waiting are told at once (at commit), as an
-- enqueue tells them.
SELECT 's' AS part, id, attempt, attempted_at, NULL AS notified FROM started
UNION ALL
SELECT 'f', id, NULL, NULL, CASE WHEN frees THEN pg_notify(__channel__, 'enqueued:' || queue) END
FROM finished
UNION ALL
SELECT 'f', id, NULL, NULL, CASE WHEN frees THEN pg_notify(__channel__, 'enqueued:' || queue) END
FROM deleted;

-- name: job_cancel
-- A running job is only flagged, and its engine told at once (cancel:<id>, at commit).
WITH changed AS (
    UPDATE __schema__.aiojobs_jobs AS j
    SET state = CASE WHEN j.state = 'running' THEN j.state ELSE 'canceled' END,
        canceled_at = CASE WHEN j.state = 'running' THEN j.canceled_at
                           ELSE coalesce(:now::timestamptz, now()) END,
        expires_at = CASE WHEN j.state = 'running' THEN NULL
                          ELSE __schema__.aiojobs_expires_at(
                              coalesce(:now::timestamptz, now()), 'canceled', -1, -1,
                              coalesce(j.keep_canceled, q.keep_canceled, :keep_canceled::float8)) END,
        cancel_requested = CASE WHEN j.state = 'running' THEN true ELSE j.cancel_requested END,
        claim_token = CASE WHEN j.state = 'running' THEN j.claim_token ELSE NULL END
    FROM __schema__.aiojobs_queues AS q
    WHERE j.id = :id::bigint AND j.state IN ('waiting', 'snoozed', 'claimed', 'running')
      AND q.name = j.queue
    RETURNING j.*
)
-- The select list is evaluated for every row returned: the notification cannot be skipped.
-- A claimed job (canceled at once) is announced too: the engine holding it may be about to
-- start it (okay_to_run, a worker process); it lets go of it at once instead of at its next poll.
SELECT changed.*,
       CASE WHEN state = 'running' OR claimed_by IS NOT NULL THEN pg_notify(__channel__, 'cancel:' || id)
       END AS notified
FROM changed;

-- name: job_claims_to_stop
-- The batch's claims that are canceled (held) or gone (not held), by primary key.
SELECT c.id, c.token,
       coalesce(j.claim_token::text = c.token AND j.state IN ('claimed', 'running'), false) AS held
FROM unnest(:ids::bigint[], :tokens::text[]) AS c(id, token)
LEFT JOIN __schema__.aiojobs_jobs AS j ON j.id = c.id
WHERE j.id IS NULL OR j.claim_token::text IS DISTINCT FROM c.token OR j.state NOT IN ('claimed', 'running')
   OR j.cancel_requested;

-- name: job_held
SELECT id, claim_token::text AS claim_token, state FROM __schema__.aiojobs_jobs
WHERE claimed_by = :engine_id::text AND state IN ('claimed', 'running');

-- name: job_retry
UPDATE __schema__.aiojobs_jobs
SET state = 'waiting', available_at = coalesce(:now::timestamptz, now()),
    max_attempts = greatest(max_attempts, attempt + 1),
    completed_at = NULL, failed_at = NULL, canceled_at = NULL, expires_at = NULL,
    claim_token = NULL, cancel_requested = false
WHERE id = :id::bigint AND state IN ('failed', 'canceled', 'completed')
RETURNING *;

-- name: job_snooze
-- An operator puts a pending job aside for :delay seconds. Attempt, errors and unique key
-- are left alone (snoozed holds the key as waiting does); other states are not touched.
UPDATE __schema__.aiojobs_jobs
SET state = 'snoozed',
    available_at = coalesce(:now::timestamptz, now()) + make_interval(secs => :delay::float8)
WHERE id = :id::bigint AND state IN ('waiting', 'snoozed')
RETURNING *;

-- name: job_delete
DELETE FROM __schema__.aiojobs_jobs
WHERE id = :id::bigint AND state NOT IN ('claimed', 'running')
RETURNING id;

-- name: job_delete_where
WITH deleted AS (
    DELETE FROM __schema__.aiojobs_jobs
    WHERE (:states::text[] IS NULL OR state = ANY(:states::text[]))
      AND (:queues::text[] IS NULL OR queue = ANY(:queues::text[]))
    RETURNING 1
)
SELECT count(*) FROM deleted;

-- name: job_count
SELECT queue, state, count(*) AS n FROM __schema__.aiojobs_jobs GROUP BY queue, state;

-- name: job_count_due
SELECT queue, state, count(*) AS n FROM __schema__.aiojobs_jobs
WHERE state IN ('waiting', 'snoozed') AND available_at <= coalesce(:now::timestamptz, now())
GROUP BY queue, state;

-- name: engine_delete_stale
DELETE FROM __schema__.aiojobs_engines
WHERE heartbeat_at < coalesce(:now::timestamptz, now()) - make_interval(secs => :stale_after::float8)
RETURNING id;

-- name: job_rescue
-- A held job whose engine is gone (or is :engine_id, restarting): a job never started goes
-- back as it was; a started one has used its attempt, and fails for good if it was the last;
-- one whose cancellation was asked for is canceled. SET expressions read the old row.
-- available_at is kept (it was due when the job was claimed): a job back in waiting runs
-- before jobs of its priority made available after it, as it would have without the crash.
-- Each queue given a job back is announced (enqueued:<queue>, at commit) so that idle
-- engines claim it at once instead of at their next poll; see "announced" below.
WITH rescued AS (
    UPDATE __schema__.aiojobs_jobs AS j
    SET state = CASE WHEN j.cancel_requested THEN 'canceled'
                     WHEN j.state = 'running' AND j.attempt >= j.max_attempts THEN 'failed'
                     ELSE 'waiting' END,
        expires_at = __schema__.aiojobs_expires_at(
            coalesce(:now::timestamptz, now()),
            CASE WHEN j.cancel_requested THEN 'canceled'
                 WHEN j.state = 'running' AND j.attempt >= j.max_attempts THEN 'failed'
                 ELSE 'waiting' END,
            -1,
            coalesce(j.keep_failed, q.keep_failed, :keep_failed::float8),
            coalesce(j.keep_canceled, q.keep_canceled, :keep_canceled::float8)),
        failed_at = CASE WHEN NOT j.cancel_requested AND j.state = 'running' AND j.attempt >= j.max_attempts
                         THEN coalesce(:now::timestamptz, now()) ELSE j.failed_at END,
        canceled_at = CASE WHEN j.cancel_requested THEN coalesce(:now::timestamptz, now())
                           ELSE j.canceled_at END,
        errors = CASE WHEN j.state = 'running' THEN j.errors || jsonb_build_array(jsonb_build_object(
                     'name', 'EngineLost',
                     'message', 'the engine running this attempt (' || j.claimed_by || ') stopped heartbeating',
                     'traceback', NULL,
                     'attempt', j.attempt,
                     'attempted_by', j.claimed_by,
                     'attempted_at', to_char(j.attempted_at AT TIME ZONE 'UTC',
                                             'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')))
                 ELSE j.errors END,
        claim_token = NULL,
        cancel_requested = false
    FROM __schema__.aiojobs_queues AS q
    WHERE j.state IN ('claimed', 'running') AND q.name = j.queue
      AND (j.claimed_by = :engine_id::text
           OR (:engine_id::text IS NULL
               AND NOT EXISTS (SELECT FROM __schema__.aiojobs_engines AS e WHERE e.id = j.claimed_by)))
    RETURNING j.*
),
announced AS (
    -- One notification per distinct queue given a job back, or whose key a rescued job
    -- frees (another failed or canceled one wakes nobody). A CTE that modifies nothing runs only as far as the outer query reads it:
    -- the cross join reads its one row (an aggregate without GROUP BY always has one)
    -- whenever a job was rescued; with none rescued there is nothing to announce.
    SELECT count(*) AS queues
    FROM (SELECT DISTINCT queue FROM rescued WHERE state = 'waiting' OR concurrency_key IS NOT NULL) AS r,
         pg_notify(__channel__, 'enqueued:' || r.queue)
)
SELECT rescued.* FROM rescued CROSS JOIN announced;

-- name: job_prune
-- Finished jobs past their expiry (set when they finished, from job, queue or engine).
-- SKIP LOCKED: two reapers pruning at once share the work instead of queueing behind each other.
WITH pruned AS (
    DELETE FROM __schema__.aiojobs_jobs
    WHERE id = ANY(ARRAY(
        SELECT id FROM __schema__.aiojobs_jobs
        WHERE expires_at < coalesce(:now::timestamptz, now())
        ORDER BY expires_at
        LIMIT :limit::integer
        FOR UPDATE SKIP LOCKED
    ))
    RETURNING 1
)
SELECT count(*) FROM pruned;

-- name: queue_list
-- COLLATE "C": byte order, as SQLite sorts, whatever the database's collation.
SELECT * FROM __schema__.aiojobs_queues ORDER BY priority, name COLLATE "C";

-- name: queue_upsert
WITH upserted AS (
    INSERT INTO __schema__.aiojobs_queues AS q (name, concurrency, priority, paused,
                                                global_concurrency, updated_at, keep_completed,
                                                keep_failed, keep_canceled, rate_limit, rate_period,
                                                concurrency_per_key, rate_limit_per_key,
                                                rate_period_per_key)
    VALUES (:name::text, coalesce(:concurrency::integer, 10), coalesce(:priority::integer, 50),
            coalesce(:paused::boolean, false), :global_concurrency::integer,
            coalesce(:now::timestamptz, now()), :keep_completed::float8, :keep_failed::float8,
            :keep_canceled::float8, :rate_limit::integer, :rate_period::float8,
            :concurrency_per_key::integer, :rate_limit_per_key::integer, :rate_period_per_key::float8)
    ON CONFLICT (name) DO UPDATE
    SET concurrency = coalesce(:concurrency::integer, q.concurrency),
        concurrency_per_key = CASE WHEN :clear_per_key::boolean THEN NULL
                                   ELSE coalesce(:concurrency_per_key::integer, q.concurrency_per_key) END,
        rate_limit_per_key = CASE WHEN :clear_rate_per_key::boolean THEN NULL
                                  ELSE coalesce(:rate_limit_per_key::integer, q.rate_limit_per_key) END,
        rate_period_per_key = CASE WHEN :clear_rate_per_key::boolean THEN NULL
                                   ELSE coalesce(:rate_period_per_key::float8, q.rate_period_per_key) END,
        rate_limit = CASE WHEN :clear_rate::boolean THEN NULL
                          ELSE coalesce(:rate_limit::integer, q.rate_limit) END,
        rate_period = CASE WHEN :clear_rate::boolean THEN NULL
                           ELSE coalesce(:rate_period::float8, q.rate_period) END,
        priority = coalesce(:priority::integer, q.priority),
        paused = coalesce(:paused::boolean, q.paused),
        global_concurrency = CASE WHEN :clear_global::boolean THEN NULL
                                  ELSE coalesce(:global_concurrency::integer, q.global_concurrency) END,
        keep_completed = CASE WHEN :set_keep_completed::boolean THEN :keep_completed::float8
                              ELSE q.keep_completed END,
        keep_failed = CASE WHEN :set_keep_failed::boolean THEN :keep_failed::float8 ELSE q.keep_failed END,
        keep_canceled = CASE WHEN :set_keep_canceled::boolean THEN :keep_canceled::float8
                             ELSE q.keep_canceled END,
        updated_at = coalesce(:now::timestamptz, now())
    RETURNING *
)
SELECT upserted.*, pg_notify(__channel__, 'queue:' || name) AS notified FROM upserted;

-- name: queue_running_counts
SELECT queue, count(*) AS n FROM __schema__.aiojobs_jobs
WHERE state IN ('claimed', 'running') AND queue = ANY(:queues::text[])
GROUP BY queue;

-- name: queue_delete_lock
-- Dialect note: unlike SQLite, an enqueue may be in flight when a queue is deleted, and the
-- check below cannot see a job not yet committed: its transaction would then commit a job
-- whose queue has no row, which an engine working every queue never learns of. SHARE mode
-- waits for the writes in flight to commit and holds new ones back until this transaction
-- ends; the wait is short (writers queue up behind it), and tried again by the caller.
SELECT set_config('lock_timeout', '200', true);

-- name: queue_delete_table_lock
LOCK TABLE __schema__.aiojobs_jobs IN SHARE MODE;

-- name: queue_delete
-- Run after queue_delete_lock, in its transaction. The notification makes running engines
-- re-read the queues.
DELETE FROM __schema__.aiojobs_queues
WHERE name = :name::text
  AND NOT EXISTS (SELECT 1 FROM __schema__.aiojobs_jobs WHERE queue = :name::text)
RETURNING name, pg_notify(__channel__, 'queue:' || name) AS notified;

-- name: engine_register
INSERT INTO __schema__.aiojobs_engines AS e (id, incarnation, host, pid, queues, started_at,
                                             heartbeat_at)
VALUES (:id::text, :incarnation::text, :host::text, :pid::integer, :queues::text[],
        coalesce(:now::timestamptz, now()), coalesce(:now::timestamptz, now()))
ON CONFLICT (id) DO UPDATE
SET incarnation = excluded.incarnation, host = excluded.host, pid = excluded.pid,
    queues = excluded.queues, started_at = excluded.started_at,
    heartbeat_at = excluded.heartbeat_at
WHERE e.heartbeat_at < coalesce(:now::timestamptz, now()) - make_interval(secs => :stale_after::float8)
   OR (e.incarnation = :takeover::text
       AND e.heartbeat_at < coalesce(:now::timestamptz, now())
                            - make_interval(secs => :takeover_quiet::float8))
RETURNING id;

-- name: engine_heartbeat
-- SQLite's engine_heartbeat and engine_revive in one statement: refresh our row ('beat'); if
-- there is none, re-create it ('revived'); a row of another incarnation stays (no row: lost).
WITH beat AS (
    UPDATE __schema__.aiojobs_engines SET heartbeat_at = coalesce(:now::timestamptz, now())
    WHERE id = :id::text AND incarnation = :incarnation::text
    RETURNING 'beat' AS outcome
),
revived AS (
    INSERT INTO __schema__.aiojobs_engines (id, incarnation, host, pid, queues, started_at,
                                            heartbeat_at)
    SELECT :id::text, :incarnation::text, :host::text, :pid::integer, :queues::text[],
           coalesce(:now::timestamptz, now()), coalesce(:now::timestamptz, now())
    WHERE NOT EXISTS (SELECT FROM beat)
    ON CONFLICT (id) DO NOTHING
    RETURNING 'revived' AS outcome
)
SELECT outcome FROM beat
UNION ALL
SELECT outcome FROM revived;

-- name: engine_get
SELECT * FROM __schema__.aiojobs_engines WHERE id = :id::text;

-- name: engine_list
SELECT * FROM __schema__.aiojobs_engines ORDER BY id COLLATE "C";

-- name: engine_unregister
DELETE FROM __schema__.aiojobs_engines WHERE id = :id::text AND incarnation = :incarnation::text;

-- name: migration_lock
-- Held until the migrating transaction ends: engines starting at once migrate one by one.
SELECT pg_advisory_xact_lock(hashtextextended(:key::text, 0));

-- name: namespace_exists
SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = :schema::text);

-- name: schema_create
CREATE SCHEMA __schema__;

-- name: schema_table_create
CREATE TABLE IF NOT EXISTS __schema__.aiojobs_schema (
    version     integer     PRIMARY KEY,
    name        text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- name: schema_table_exists
SELECT to_regclass(:table::text) IS NOT NULL;

-- name: schema_version
SELECT coalesce(max(version), 0) FROM __schema__.aiojobs_schema;

-- name: schema_version_insert
INSERT INTO __schema__.aiojobs_schema (version, name) VALUES (:version::integer, :name::text);

-- name: cron_upsert
-- A schedule's definition; its progress (last_tick, last_job_id) and paused state are kept.
-- A new schedule starts from now: its first run is its next tick, not a missed one.
INSERT INTO __schema__.aiojobs_cron AS c (name, expression, timezone, job, args, kwargs, options,
                                          last_tick, created_at, updated_at)
VALUES (:name::text, :expression::text, :timezone::text, :job::text, :args::text::jsonb,
        :kwargs::text::jsonb, :options::text::jsonb, coalesce(:now::timestamptz, now()),
        coalesce(:now::timestamptz, now()), coalesce(:now::timestamptz, now()))
ON CONFLICT (name) DO UPDATE
SET expression = excluded.expression, timezone = excluded.timezone, job = excluded.job,
    args = excluded.args, kwargs = excluded.kwargs, options = excluded.options,
    updated_at = excluded.updated_at
RETURNING name, expression, timezone, job, args::text AS args, kwargs::text AS kwargs,
          options::text AS options, paused, last_tick, last_job_id, created_at, updated_at;

-- name: cron_delete
DELETE FROM __schema__.aiojobs_cron WHERE name = :name::text RETURNING name;

-- name: cron_pause
UPDATE __schema__.aiojobs_cron
SET paused = :paused::boolean, updated_at = coalesce(:now::timestamptz, now())
WHERE name = :name::text
RETURNING name, expression, timezone, job, args::text AS args, kwargs::text AS kwargs,
          options::text AS options, paused, last_tick, last_job_id, created_at, updated_at;

-- name: cron_list
SELECT name, expression, timezone, job, args::text AS args, kwargs::text AS kwargs,
       options::text AS options, paused, last_tick, last_job_id, created_at, updated_at
FROM __schema__.aiojobs_cron ORDER BY name COLLATE "C";

-- name: cron_advance
-- After the tick's job is stored (or found already stored by another engine).
UPDATE __schema__.aiojobs_cron
SET last_tick = :tick::timestamptz, last_job_id = coalesce(:job_id::bigint, last_job_id)
WHERE name = :name::text AND (last_tick IS NULL OR last_tick < :tick::timestamptz);

-- name: database_now
SELECT now();

-- name: job_activity
-- Completed and failed jobs per queue per bucket since :since (the dashboard's chart).
SELECT queue,
       to_timestamp(floor(extract(epoch FROM coalesce(completed_at, failed_at)) / :bucket::float8)
                    * :bucket::float8) AS start,
       count(*) FILTER (WHERE state = 'completed') AS completed,
       count(*) FILTER (WHERE state = 'failed') AS failed
FROM __schema__.aiojobs_jobs
WHERE (state = 'completed' AND completed_at >= :since::timestamptz)
   OR (state = 'failed' AND failed_at >= :since::timestamptz)
GROUP BY 1, 2
ORDER BY 2, 1;
