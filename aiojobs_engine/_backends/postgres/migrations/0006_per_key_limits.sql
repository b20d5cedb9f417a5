-- Per-key concurrency and per-key rate limits (issue 21). A job may carry a concurrency
-- key; a queue may allow at most concurrency_per_key held (claimed or running) jobs per key
-- and at most rate_limit_per_key starts per key in any window of rate_period_per_key
-- seconds. Claims of such a queue count under the queue's claim lock, so both are exact.
-- Per-key windows are rows of aiojobs_rate_windows with key <> ''.
ALTER TABLE __schema__.aiojobs_jobs ADD COLUMN IF NOT EXISTS concurrency_key text;
ALTER TABLE __schema__.aiojobs_queues ADD COLUMN IF NOT EXISTS concurrency_per_key integer;
ALTER TABLE __schema__.aiojobs_queues ADD COLUMN IF NOT EXISTS rate_limit_per_key integer;
ALTER TABLE __schema__.aiojobs_queues ADD COLUMN IF NOT EXISTS rate_period_per_key double precision;

-- What each key holds now. Only keyed jobs enter it, so queues without keys never pay for it
-- (the key's test comes first: it settles the predicate of an unkeyed row at once).
CREATE INDEX IF NOT EXISTS aiojobs_jobs_key_held ON __schema__.aiojobs_jobs (queue, concurrency_key)
    WHERE concurrency_key IS NOT NULL AND state IN ('claimed', 'running');

-- Due keyed jobs by key: a claim walks it one key at a time when a busy key's backlog fills
-- the claim index's first pages. Only keyed jobs enter it.
CREATE INDEX IF NOT EXISTS aiojobs_jobs_key_due
    ON __schema__.aiojobs_jobs (queue, concurrency_key, priority, available_at, id)
    WHERE concurrency_key IS NOT NULL AND state IN ('waiting', 'snoozed');
