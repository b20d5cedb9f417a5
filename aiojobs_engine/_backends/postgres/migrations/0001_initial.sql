-- Jobs, queues and engines, equivalent to SQLite's 0001_initial. __schema__ is replaced by
-- the quoted schema name when the file is loaded (see _backend.py); the runner creates the
-- schema and the aiojobs_schema version table, and applies this file in one transaction.
--
-- Dialect notes: times are timestamptz (SQLite: integer microseconds), JSON columns are
-- jsonb (validated on the way in), claim tokens are uuid from gen_random_uuid() (built in
-- since PostgreSQL 13), engines.queues is a text[] (SQLite: JSON text).

CREATE TABLE __schema__.aiojobs_jobs (
    id                  bigint           GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue               text             NOT NULL,
    name                text             NOT NULL,
    args                jsonb            NOT NULL DEFAULT '[]',
    kwargs              jsonb            NOT NULL DEFAULT '{}',
    constructor_args    jsonb            NOT NULL DEFAULT '[]',
    state               text             NOT NULL DEFAULT 'waiting'
                        CONSTRAINT aiojobs_jobs_state_check
                        CHECK (state IN ('waiting', 'claimed', 'running', 'completed',
                                         'failed', 'canceled', 'snoozed')),
    priority            integer          NOT NULL DEFAULT 50,
    attempt             integer          NOT NULL DEFAULT 0,
    max_attempts        integer          NOT NULL DEFAULT 5,
    timeout             double precision,
    retry               jsonb,
    inserted_at         timestamptz      NOT NULL,
    available_at        timestamptz      NOT NULL,
    claimed_at          timestamptz,
    attempted_at        timestamptz,
    completed_at        timestamptz,
    failed_at           timestamptz,
    canceled_at         timestamptz,
    claimed_by          text,
    claim_token         uuid,
    cancel_requested    boolean          NOT NULL DEFAULT false,
    result              jsonb,
    errors              jsonb            NOT NULL DEFAULT '[]',
    unique_key          text,
    rescheduled_from    bigint,
    meta                jsonb            NOT NULL DEFAULT '{}'
);

-- The claim: one range scan per queue, in job-priority then availability order; the index
-- holds only pending rows, so it stays small however many finished jobs are kept.
CREATE INDEX aiojobs_jobs_claim ON __schema__.aiojobs_jobs (queue, priority, available_at, id)
    WHERE state IN ('waiting', 'snoozed');

-- The reaper, cancellation and global caps: jobs held by engines.
CREATE INDEX aiojobs_jobs_held ON __schema__.aiojobs_jobs (claimed_by)
    WHERE state IN ('claimed', 'running');

-- Pruning and listing by state: finished jobs by age.
CREATE INDEX aiojobs_jobs_state ON __schema__.aiojobs_jobs (state, id);

-- Every queue a job was enqueued to is known, so engines that work "every queue" find it.
-- SQLite registers queues with a trigger; here the insert statements do it themselves, in a
-- CTE with ON CONFLICT DO NOTHING (see queries.sql): once per distinct queue of a batch
-- rather than once per row as a row trigger would, and in the same statement that sends
-- the queue's notification, so both follow the inserting transaction.
CREATE TABLE __schema__.aiojobs_queues (
    name                text             PRIMARY KEY,
    concurrency         integer          NOT NULL DEFAULT 10,
    priority            integer          NOT NULL DEFAULT 50,
    paused              boolean          NOT NULL DEFAULT false,
    global_concurrency  integer,
    updated_at          timestamptz      NOT NULL
);

CREATE TABLE __schema__.aiojobs_engines (
    id                  text             PRIMARY KEY,
    incarnation         text             NOT NULL,
    host                text             NOT NULL,
    pid                 integer          NOT NULL,
    queues              text[],
    started_at          timestamptz      NOT NULL,
    heartbeat_at        timestamptz      NOT NULL
);
