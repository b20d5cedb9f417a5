-- Rate limits per queue (issue 21): at most rate_limit starts in any window of rate_period
-- seconds, across every engine. aiojobs_rate_windows keeps, per queue (and, later, per key
-- of a queue: key '' is the whole queue), the start times of the window that is still open:
-- never more than rate_limit of them. Claims of a limited queue read and write it under the
-- queue's claim lock, in the claim's transaction, so the count is exact.
ALTER TABLE __schema__.aiojobs_queues ADD COLUMN IF NOT EXISTS rate_limit integer;
ALTER TABLE __schema__.aiojobs_queues ADD COLUMN IF NOT EXISTS rate_period double precision;

CREATE TABLE IF NOT EXISTS __schema__.aiojobs_rate_windows (
    queue   text        NOT NULL,
    key     text        NOT NULL DEFAULT '',
    starts  timestamptz[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (queue, key)
);
