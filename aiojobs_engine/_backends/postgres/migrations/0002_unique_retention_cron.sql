-- Uniqueness, retention and recurring jobs; equivalent to SQLite's 0002.

-- Uniqueness: a job with a unique_key occupies that key while its state is one of its own
-- unique_states (stored as ',waiting,running,'). The partial unique index makes the
-- database refuse a second job holding the same key, under any concurrency.
ALTER TABLE __schema__.aiojobs_jobs ADD COLUMN unique_states text;
CREATE UNIQUE INDEX aiojobs_jobs_unique ON __schema__.aiojobs_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND strpos(unique_states, ',' || state || ',') > 0;

-- Retention: when a job finishes, expires_at = when it may be deleted (NULL: kept). The
-- delay comes from the job (its keep_* columns), else its queue, else the engine; NULL
-- there means "not set here", a negative number "keep for ever".
ALTER TABLE __schema__.aiojobs_jobs ADD COLUMN expires_at timestamptz;
ALTER TABLE __schema__.aiojobs_jobs ADD COLUMN keep_completed double precision;
ALTER TABLE __schema__.aiojobs_jobs ADD COLUMN keep_failed double precision;
ALTER TABLE __schema__.aiojobs_jobs ADD COLUMN keep_canceled double precision;
CREATE INDEX aiojobs_jobs_expires ON __schema__.aiojobs_jobs (expires_at) WHERE expires_at IS NOT NULL;
ALTER TABLE __schema__.aiojobs_queues ADD COLUMN keep_completed double precision;
ALTER TABLE __schema__.aiojobs_queues ADD COLUMN keep_failed double precision;
ALTER TABLE __schema__.aiojobs_queues ADD COLUMN keep_canceled double precision;

-- Jobs finished before this migration get the default retention (7 days; failed: kept).
UPDATE __schema__.aiojobs_jobs SET expires_at = completed_at + interval '7 days' WHERE state = 'completed';
UPDATE __schema__.aiojobs_jobs SET expires_at = canceled_at + interval '7 days' WHERE state = 'canceled';

-- Recurring jobs: one row per schedule. last_tick is the newest tick enqueued; each tick's
-- job carries the unique key 'cron:<name>:<tick>' in every state, so two engines can never
-- enqueue one tick twice.
CREATE TABLE __schema__.aiojobs_cron (
    name            text        PRIMARY KEY,
    expression      text        NOT NULL,
    timezone        text        NOT NULL DEFAULT 'UTC',
    job             text        NOT NULL,
    args            jsonb       NOT NULL DEFAULT '[]',
    kwargs          jsonb       NOT NULL DEFAULT '{}',
    options         jsonb       NOT NULL DEFAULT '{}',
    paused          boolean     NOT NULL DEFAULT false,
    last_tick       timestamptz,
    last_job_id     bigint,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);

-- When a job that just reached `state` may be deleted; NULL: kept. The keep_* arguments are
-- the retention already chosen (job, else queue, else engine), negative meaning "for ever".
CREATE FUNCTION __schema__.aiojobs_expires_at(now timestamptz, state text, keep_completed float8,
                                              keep_failed float8, keep_canceled float8)
RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN k IS NULL OR k < 0 THEN NULL ELSE now + make_interval(secs => k) END
    FROM (SELECT CASE state WHEN 'completed' THEN keep_completed
                            WHEN 'failed' THEN keep_failed
                            WHEN 'canceled' THEN keep_canceled END AS k) AS keep
$$;
