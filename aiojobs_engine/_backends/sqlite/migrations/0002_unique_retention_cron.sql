-- Uniqueness, retention and recurring jobs.

-- Uniqueness: a job with a unique_key occupies that key while its state is one of its own
-- unique_states (stored as ',waiting,running,'). The partial unique index makes the
-- database refuse a second job holding the same key: no read-then-write race.
ALTER TABLE aiojobs_jobs ADD COLUMN unique_states TEXT;
CREATE UNIQUE INDEX aiojobs_jobs_unique ON aiojobs_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND instr(unique_states, ',' || state || ',') > 0;

-- Retention: when a job finishes, expires_at = when it may be deleted (NULL: kept). The
-- delay comes from the job (its keep_* columns), else its queue, else the engine; NULL
-- there means "not set here", a negative number "keep for ever".
ALTER TABLE aiojobs_jobs ADD COLUMN expires_at INTEGER;
ALTER TABLE aiojobs_jobs ADD COLUMN keep_completed REAL;
ALTER TABLE aiojobs_jobs ADD COLUMN keep_failed REAL;
ALTER TABLE aiojobs_jobs ADD COLUMN keep_canceled REAL;
CREATE INDEX aiojobs_jobs_expires ON aiojobs_jobs (expires_at) WHERE expires_at IS NOT NULL;
ALTER TABLE aiojobs_queues ADD COLUMN keep_completed REAL;
ALTER TABLE aiojobs_queues ADD COLUMN keep_failed REAL;
ALTER TABLE aiojobs_queues ADD COLUMN keep_canceled REAL;

-- Jobs finished before this migration get the default retention (7 days; failed: kept).
UPDATE aiojobs_jobs SET expires_at = completed_at + 604800000000 WHERE state = 'completed';
UPDATE aiojobs_jobs SET expires_at = canceled_at + 604800000000 WHERE state = 'canceled';

-- Recurring jobs: one row per schedule. last_tick is the newest tick enqueued; each tick's
-- job carries the unique key 'cron:<name>:<tick>' in every state, so two engines can never
-- enqueue one tick twice.
CREATE TABLE aiojobs_cron (
    name            TEXT    PRIMARY KEY,
    expression      TEXT    NOT NULL,
    timezone        TEXT    NOT NULL DEFAULT 'UTC',
    job             TEXT    NOT NULL,
    args            TEXT    NOT NULL DEFAULT '[]',
    kwargs          TEXT    NOT NULL DEFAULT '{}',
    options         TEXT    NOT NULL DEFAULT '{}',
    paused          INTEGER NOT NULL DEFAULT 0,
    last_tick       INTEGER,
    last_job_id     INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
