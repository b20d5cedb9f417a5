-- Jobs, queues and engines. Times are INTEGER microseconds since the Unix epoch (UTC):
-- exact, cheap to compare, and free of text-format pitfalls. JSON is TEXT.

CREATE TABLE aiojobs_jobs (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,  -- ids are never reused
    queue               TEXT    NOT NULL,
    name                TEXT    NOT NULL,
    args                TEXT    NOT NULL DEFAULT '[]',
    kwargs              TEXT    NOT NULL DEFAULT '{}',
    constructor_args    TEXT    NOT NULL DEFAULT '[]',
    state               TEXT    NOT NULL DEFAULT 'waiting'
                        CHECK (state IN ('waiting', 'claimed', 'running', 'completed',
                                         'failed', 'canceled', 'snoozed')),
    priority            INTEGER NOT NULL DEFAULT 50,
    attempt             INTEGER NOT NULL DEFAULT 0,
    max_attempts        INTEGER NOT NULL DEFAULT 5,
    timeout             REAL,
    retry               TEXT,
    inserted_at         INTEGER NOT NULL,
    available_at        INTEGER NOT NULL,
    claimed_at          INTEGER,
    attempted_at        INTEGER,
    completed_at        INTEGER,
    failed_at           INTEGER,
    canceled_at         INTEGER,
    claimed_by          TEXT,
    claim_token         TEXT,
    cancel_requested    INTEGER NOT NULL DEFAULT 0,
    result              TEXT,
    errors              TEXT    NOT NULL DEFAULT '[]',
    unique_key          TEXT,
    rescheduled_from    INTEGER,
    meta                TEXT    NOT NULL DEFAULT '{}'
);

-- The claim: one range scan per queue, in job-priority then availability order.
CREATE INDEX aiojobs_jobs_claim ON aiojobs_jobs (queue, priority, available_at, id)
    WHERE state IN ('waiting', 'snoozed');

-- The reaper and cancellation: jobs held by engines.
CREATE INDEX aiojobs_jobs_held ON aiojobs_jobs (claimed_by)
    WHERE state IN ('claimed', 'running');

-- Pruning and listing by state: finished jobs by age.
CREATE INDEX aiojobs_jobs_state ON aiojobs_jobs (state, id);

CREATE TABLE aiojobs_queues (
    name                TEXT    PRIMARY KEY,
    concurrency         INTEGER NOT NULL DEFAULT 10,
    priority            INTEGER NOT NULL DEFAULT 50,
    paused              INTEGER NOT NULL DEFAULT 0,
    global_concurrency  INTEGER,
    updated_at          INTEGER NOT NULL
);

-- Every queue a job was enqueued to is known, so engines that work "every queue" find it.
CREATE TRIGGER aiojobs_jobs_register_queue AFTER INSERT ON aiojobs_jobs
BEGIN
    INSERT OR IGNORE INTO aiojobs_queues (name, updated_at) VALUES (NEW.queue, NEW.inserted_at);
END;

CREATE TABLE aiojobs_engines (
    id                  TEXT    PRIMARY KEY,
    incarnation         TEXT    NOT NULL,
    host                TEXT    NOT NULL,
    pid                 INTEGER NOT NULL,
    queues              TEXT,
    started_at          INTEGER NOT NULL,
    heartbeat_at        INTEGER NOT NULL
);
