-- Per-key concurrency and per-key rate limits (issue 21); equivalent to PostgreSQL's 0006.
-- Per-key windows are rows of aiojobs_rate_windows with key <> ''.
ALTER TABLE aiojobs_jobs ADD COLUMN concurrency_key TEXT;
ALTER TABLE aiojobs_queues ADD COLUMN concurrency_per_key INTEGER;
ALTER TABLE aiojobs_queues ADD COLUMN rate_limit_per_key INTEGER;
ALTER TABLE aiojobs_queues ADD COLUMN rate_period_per_key REAL;

-- What each key holds now. Only keyed jobs enter it, so queues without keys never pay for it
-- (the key's test comes first: it settles the predicate of an unkeyed row at once).
CREATE INDEX aiojobs_jobs_key_held ON aiojobs_jobs (queue, concurrency_key)
    WHERE concurrency_key IS NOT NULL AND state IN ('claimed', 'running');

-- Due keyed jobs by key: a claim walks it one key at a time when a busy key's backlog fills
-- the claim index's first pages. Only keyed jobs enter it.
CREATE INDEX aiojobs_jobs_key_due ON aiojobs_jobs (queue, concurrency_key, priority, available_at, id)
    WHERE concurrency_key IS NOT NULL AND state IN ('waiting', 'snoozed');
