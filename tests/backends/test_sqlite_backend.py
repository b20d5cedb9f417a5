"""SQLite-specific behaviour: files, WAL, several connections, cancellation mid-transaction."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from aiojobs_engine import ConfigurationError, SchemaError
from aiojobs_engine._backends._protocol import JobClaim, QueueDemand
from aiojobs_engine._backends.sqlite import SQLiteBackend
from aiojobs_engine._backends.sqlite._backend import _Q
from aiojobs_engine.conformance import T0, insert


async def opened(path: Path) -> SQLiteBackend:
    backend = SQLiteBackend(str(path))
    await backend.open()
    await backend.migrate()
    return backend


async def test_wal_mode_and_busy_timeout(tmp_path: Path) -> None:
    backend = await opened(tmp_path / "jobs.db")
    try:
        with closing(sqlite3.connect(tmp_path / "jobs.db")) as raw, raw:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        await backend.close()


async def test_cancelling_a_transaction_never_leaves_the_connection_inside_it(tmp_path: Path) -> None:
    """Regression: a cancellation during BEGIN used to leave the transaction open, so the
    connection's next statements were rolled back when it closed."""
    backend = await opened(tmp_path / "jobs.db")
    try:
        for round_ in range(60):
            task = asyncio.create_task(backend.job_claim(JobClaim(engine_id="e", demands=[QueueDemand("q", 5)])))
            for _ in range(round_ % 4):
                await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await backend.job_insert_many([insert()], now=T0)
    finally:
        await backend.close()
    with closing(sqlite3.connect(tmp_path / "jobs.db")) as raw, raw:
        assert raw.execute("SELECT count(*) FROM aiojobs_jobs").fetchone()[0] == 60


async def test_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    backend = SQLiteBackend(str(tmp_path / "nope" / "jobs.db"))
    with pytest.raises(ConfigurationError, match="does not exist"):
        await backend.open()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    backend = await opened(tmp_path / "jobs.db")
    await backend.close()
    with closing(sqlite3.connect(tmp_path / "jobs.db")) as raw, raw:
        raw.execute("INSERT INTO aiojobs_schema (version, name, applied_at) VALUES (999, 'future', 0)")
    backend = SQLiteBackend(str(tmp_path / "jobs.db"))
    await backend.open()
    try:
        with pytest.raises(SchemaError, match="newer than this aiojobs_engine knows"):
            await backend.migrate()
    finally:
        await backend.close()


async def test_concurrent_migrations_from_several_connections(tmp_path: Path) -> None:
    backends = [SQLiteBackend(str(tmp_path / "jobs.db")) for _ in range(4)]
    for backend in backends:
        await backend.open()
    try:
        applied = await asyncio.gather(*(b.migrate() for b in backends))
        assert sorted(map(len, applied)) == [0, 0, 0, backends[0].latest_version]
    finally:
        for backend in backends:
            await backend.close()


async def test_keyed_claim_plans_use_their_indexes(tmp_path: Path) -> None:
    """A queue with per-key limits and 200,000 waiting jobs over 10,000 keys, some held, next
    to another queue's held jobs: key_candidates searches the claim index in claim order (no
    sort of its own, no scan of the jobs) and reads what the keys hold from the held-keys
    index; job_claim_picked finds its picks through an index. As the engine leaves a database
    (SQLite has no statistics until someone runs ANALYZE) and after ANALYZE."""
    await (await opened(tmp_path / "jobs.db")).close()
    with closing(sqlite3.connect(tmp_path / "jobs.db")) as raw:
        with raw:
            raw.execute("""
                WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 200000)
                INSERT INTO aiojobs_jobs (queue, name, priority, inserted_at, available_at, concurrency_key)
                SELECT 'api', 'job', x % 3, 0, x * 1000, 'k' || (x % 10000) FROM n""")
            raw.execute("""
                WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 5000)
                INSERT INTO aiojobs_jobs (queue, name, state, attempt, claimed_by, inserted_at, available_at)
                SELECT 'other', 'job', 'running', 1, 'e2', 0, 0 FROM n""")
            raw.execute("UPDATE aiojobs_jobs SET state = 'running', claimed_by = 'e1', attempt = 1 "
                        "WHERE queue = 'api' AND id % 400 = 0")  # 500 keys hold a job
        candidates = {"queue": "api", "now": 10**12, "per_key": 1, "rate_n": 5, "opened_after": 10**12 - 10**6,
                      "excluded": '["k1", "k2"]', "scan": 200, "budget": 1000, "take": 1, "after": "k5", "steps": 256}
        picked = {"ids": json.dumps(list(range(1, 101))), "start_all": 0, "start_now": '["job"]', "now": 10**12,
                  "engine_id": "e1", "incarnation": "i1", "fresh_since": 0}
        for analyzed in (False, True):
            if analyzed:
                raw.execute("ANALYZE")
            plan = raw.execute(f"EXPLAIN QUERY PLAN {_Q['key_candidates']}", candidates).fetchall()
            details = [detail for _id, _parent, _unused, detail in plan]
            assert not [d for d in details if d.startswith("SCAN aiojobs_jobs")], (analyzed, details)
            # The page, and the count of what the budget held when the page is short.
            scans = [row for row in plan if row[3].startswith("SEARCH aiojobs_jobs USING INDEX aiojobs_jobs_claim ")]
            assert len(scans) == 2, (analyzed, details)
            sorts = [row for row in plan for scan in scans if row[1] == scan[1] and "TEMP B-TREE" in row[3]]
            assert not sorts, (analyzed, details)  # both come in the index's order
            assert any(d.startswith("SEARCH aiojobs_jobs USING INDEX aiojobs_jobs_key_held ") or
                       d.startswith("SEARCH aiojobs_jobs USING COVERING INDEX aiojobs_jobs_key_held ")
                       for d in details), (analyzed, details)
            plan = raw.execute(f"EXPLAIN QUERY PLAN {_Q['key_candidates_loose']}", candidates).fetchall()
            details = [detail for _id, _parent, _unused, detail in plan]  # key by key: the due-keys index
            assert not [d for d in details if d.startswith("SCAN aiojobs_jobs")], (analyzed, details)
            assert any("INDEX aiojobs_jobs_key_due " in d for d in details), (analyzed, details)
            plan = raw.execute(f"EXPLAIN QUERY PLAN {_Q['job_claim_picked']}", picked).fetchall()
            details = [detail for _id, _parent, _unused, detail in plan]
            assert not [d for d in details if d.startswith("SCAN aiojobs_jobs")], (analyzed, details)
            assert [d for d in details if d.startswith("SEARCH aiojobs_jobs USING ")], (analyzed, details)
