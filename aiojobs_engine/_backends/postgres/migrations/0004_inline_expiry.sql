-- The expiry of a job that just finished, rewritten so that PostgreSQL inlines it into the
-- statements that call it (the outcome write calls it for every row). As 0002 wrote it (a
-- SELECT with a FROM), every call went through the SQL-function executor
-- (docs/decisions/2026-12-06-inline-expiry-function.md).
--
-- Same results for every input: NULL (kept) when the state keeps no retention or its
-- keep_* is NULL or negative, else now + keep_* seconds. STABLE rather than IMMUTABLE
-- because timestamptz + interval is STABLE, and PostgreSQL inlines a SQL function only if
-- its body is no more volatile than it is declared.
CREATE OR REPLACE FUNCTION __schema__.aiojobs_expires_at(now timestamptz, state text, keep_completed float8,
                                                         keep_failed float8, keep_canceled float8)
RETURNS timestamptz LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE state
               WHEN 'completed' THEN CASE WHEN keep_completed >= 0 THEN now + make_interval(secs => keep_completed) END
               WHEN 'failed' THEN CASE WHEN keep_failed >= 0 THEN now + make_interval(secs => keep_failed) END
               WHEN 'canceled' THEN CASE WHEN keep_canceled >= 0 THEN now + make_interval(secs => keep_canceled) END
           END
$$;
