"""Claim cost as the jobs table grows: it must stay flat.

    python benchmarks/claim_cost.py                  # 1,000,000 rows, both backends
    python benchmarks/claim_cost.py --rows 200000    # quicker

For each backend, the time of one claim of 10 jobs plus the fenced completion of those 10
(the engine's own statements, through its backend), median of 300 rounds, in three tables:
  small      10,000 waiting jobs
  waiting    --rows waiting jobs
  finished   10,000 waiting jobs and --rows completed ones (a table that was never pruned)
  churned    10,000 waiting jobs after --rows others went from waiting to completed, with
             no vacuum since (PostgreSQL: each of them left a dead entry in the claim index,
             which every claim walks past until a vacuum removes it; SQLite has no dead
             entries: its updates change the index in place)
Ratios are against "small" in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from aiojobs_engine._backends import Backend, make_backend
from aiojobs_engine._backends._protocol import JobClaim, JobOutcome, JobStart, QueueDemand
from aiojobs_engine._records import JobState
from aiojobs_engine._settings import Retention
from aiojobs_engine._url import parse_url
from benchmarks.bench import POSTGRES_URL, _drop_postgres_database, _postgres_database

ROUNDS = 300
WARMUP = 20  # rounds not timed: caches, plans and the connections' first use
KEEP = Retention(completed=7 * 86400, failed=None, canceled=7 * 86400)
SMALL = 10_000

_FILL_SQLITE = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count})
INSERT INTO aiojobs_jobs (queue, name, state, inserted_at, available_at, completed_at)
SELECT 'bench', 'noop', '{state}', 0, i, CASE WHEN '{state}' = 'completed' THEN i END FROM n
"""
# Jobs that were waiting and have run since: their waiting versions stay in the claim index
# (PostgreSQL) until a vacuum. Older than the waiting jobs, as they would be.
_CHURN_SQLITE = """
UPDATE aiojobs_jobs SET state = 'completed', completed_at = available_at WHERE state = 'waiting'
"""
_CHURN_POSTGRES = """
UPDATE {schema}.aiojobs_jobs SET state = 'completed', completed_at = now() WHERE state = 'waiting'
"""
_FILL_POSTGRES = """
INSERT INTO {schema}.aiojobs_jobs (queue, name, state, inserted_at, available_at, completed_at)
SELECT 'bench', 'noop', '{state}', now(), now() - make_interval(secs => i),
       CASE WHEN '{state}' = 'completed' THEN now() END
FROM generate_series(1, {count}) AS i
"""


async def _fill(url: str, waiting: int, finished: int, churned: int = 0) -> None:
    """``churned`` waiting jobs, completed in place (no vacuum after), then the rest."""
    parsed = parse_url(url)
    if parsed.kind == "sqlite":
        import aiosqlite

        assert parsed.path is not None
        async with aiosqlite.connect(parsed.path, isolation_level=None) as conn:
            await conn.execute("DELETE FROM aiojobs_jobs")
            if churned:
                await conn.execute(_FILL_SQLITE.format(count=churned, state="waiting"))
                await conn.execute(_CHURN_SQLITE)
            for state, count in (("waiting", waiting), ("completed", finished)):
                if count:
                    await conn.execute(_FILL_SQLITE.format(count=count, state=state))
            await conn.execute("ANALYZE")
        return
    assert parsed.dsn is not None
    conn = await asyncpg.connect(parsed.dsn)
    try:
        await conn.execute("TRUNCATE public.aiojobs_jobs")
        if churned:
            await conn.execute(_FILL_POSTGRES.format(schema="public", count=churned, state="waiting"))
            await conn.execute(_CHURN_POSTGRES.format(schema="public"))
        for state, count in (("waiting", waiting), ("completed", finished)):
            if count:
                await conn.execute(_FILL_POSTGRES.format(schema="public", count=count, state=state))
        await conn.execute("ANALYZE public.aiojobs_jobs" if churned else "VACUUM ANALYZE public.aiojobs_jobs")
        # The fill wrote hundreds of MB of WAL: checkpoint now, or the server does it in the
        # middle of the timed rounds (that alone moved one run's figure by half).
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def _measure(backend: Backend) -> float:
    """Median seconds of one claim of 10 plus the completion of those 10."""
    timings = []
    for _ in range(WARMUP + ROUNDS):
        started = time.perf_counter()
        claimed = await backend.job_claim(JobClaim(engine_id="bench", demands=[QueueDemand("bench", 10)]))
        await backend.job_start_many([JobStart(j.id, j.claim_token or "") for j in claimed])
        await backend.job_finish_many([
            JobOutcome(id=j.id, token=j.claim_token or "", from_state=JobState.RUNNING, state=JobState.COMPLETED,
                       result_json="null")
            for j in claimed
        ], retention=KEEP)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings[WARMUP:])


async def measure(url: str, rows: int) -> dict[str, float]:
    backend = make_backend(parse_url(url))
    await backend.open()
    try:
        await backend.migrate()
        figures = {}
        for label, waiting, finished, churned in (("small", SMALL, 0, 0), ("waiting", rows, 0, 0),
                                                  ("finished", SMALL, rows, 0), ("churned", SMALL, 0, rows)):
            await _fill(url, waiting, finished, churned)
            figures[label] = await _measure(backend)
        return figures
    finally:
        await backend.close()


async def run(rows: int, backends: list[str]) -> dict[str, dict[str, float]]:
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        if "sqlite" in backends:
            results["sqlite"] = await measure(f"sqlite:///{Path(folder) / 'claims.db'}", rows)
        if "postgresql" in backends:
            database = await _postgres_database()
            if database is None:
                print(f"PostgreSQL at {POSTGRES_URL} does not answer: skipped", file=sys.stderr)
            else:
                try:
                    results["postgresql"] = await measure(database, rows)
                finally:
                    await _drop_postgres_database(database)
    return results


def report(results: dict[str, dict[str, float]], rows: int) -> str:
    lines = [f"{'backend':<11} {'table':<46} {'claim+complete 10':>18} {'vs small':>9}"]
    labels = {"small": f"{SMALL:,} waiting", "waiting": f"{rows:,} waiting",
              "finished": f"{SMALL:,} waiting + {rows:,} finished",
              "churned": f"{SMALL:,} waiting after {rows:,} ran, unvacuumed"}
    for backend, figures in results.items():
        for label, seconds in figures.items():
            ratio = seconds / figures["small"]
            lines.append(f"{backend:<11} {labels[label]:<46} {seconds * 1000:>15.2f} ms {ratio:>9.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgresql"])
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.rows, args.backend or ["sqlite", "postgresql"]))
    print(report(results, args.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
