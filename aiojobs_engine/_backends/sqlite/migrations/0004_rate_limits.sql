-- Rate limits per queue (issue 21); equivalent to PostgreSQL's 0005. aiojobs_rate_windows
-- keeps, per queue (key '' is the whole queue), the start times (microseconds, a JSON array)
-- of the window still open: never more than rate_limit of them. Claims of a limited queue
-- read and write it in the claim's write transaction (SQLite has one writer), so the count
-- is exact.
ALTER TABLE aiojobs_queues ADD COLUMN rate_limit INTEGER;
ALTER TABLE aiojobs_queues ADD COLUMN rate_period REAL;

CREATE TABLE aiojobs_rate_windows (
    queue   TEXT    NOT NULL,
    key     TEXT    NOT NULL DEFAULT '',
    starts  TEXT    NOT NULL DEFAULT '[]',
    PRIMARY KEY (queue, key)
) WITHOUT ROWID;
