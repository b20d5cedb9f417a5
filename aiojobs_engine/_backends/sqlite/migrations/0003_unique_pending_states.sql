-- A unique job holds its key in every pending state (waiting, snoozed, claimed, running).
-- UniqueConfig requires it now: a job moves between those states (claim, retry, snooze,
-- rescue) without asking the database for its key, so a move into a state in which it did
-- not hold the key could run into another job holding it (the reaper's rescue then failed
-- on every pass, and a completion or a retry failed the same way).
--
-- Jobs stored by earlier versions with fewer unique states get every pending state, and keep
-- their choice of completed, failed and canceled. Where that would give one key to two jobs,
-- the job holding it now (else the oldest) keeps it; the others hold no key any more
-- (unique_states NULL; their unique_key stays, for the record). The current holder of a key
-- always sorts first, so no row of this statement ever takes a key another row still holds.
WITH normalized AS (
    SELECT id, unique_key, state, unique_states AS old,
           instr(unique_states, ',waiting,') = 0 OR instr(unique_states, ',snoozed,') = 0
               OR instr(unique_states, ',claimed,') = 0 OR instr(unique_states, ',running,') = 0 AS legacy,
           ',waiting,snoozed,claimed,running,'
               || CASE WHEN instr(unique_states, ',completed,') > 0 THEN 'completed,' ELSE '' END
               || CASE WHEN instr(unique_states, ',failed,') > 0 THEN 'failed,' ELSE '' END
               || CASE WHEN instr(unique_states, ',canceled,') > 0 THEN 'canceled,' ELSE '' END AS new
    FROM aiojobs_jobs
    WHERE unique_key IS NOT NULL AND unique_states IS NOT NULL
),
ranked AS (
    SELECT id, legacy, new, instr(new, ',' || state || ',') > 0 AS holds,
           row_number() OVER (PARTITION BY unique_key, instr(new, ',' || state || ',') > 0
                              ORDER BY instr(old, ',' || state || ',') > 0 DESC, id) AS place
    FROM normalized
)
UPDATE aiojobs_jobs AS j
SET unique_states = CASE WHEN r.holds AND r.place > 1 THEN NULL ELSE r.new END
FROM ranked AS r
WHERE j.id = r.id AND r.legacy;
