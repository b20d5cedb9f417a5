"""Migration 0003 on both backends: unique jobs stored with fewer unique states than every
pending one (which earlier versions accepted) are repaired, and the data is kept.

The database is brought to version 2 by migrating fully and forgetting version 3 (0003
changes data only), so the rows below are what an earlier version could have stored.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from dataclasses import replace

import asyncpg
import pytest

from aiojobs_engine._backends import Backend, make_backend
from aiojobs_engine._backends._protocol import JobFilter, JobInsert, JobOutcome, JobStart
from aiojobs_engine._errors import BackendError
from aiojobs_engine._records import JobState
from aiojobs_engine._url import parse_url
from aiojobs_engine.conformance import KEEP, T0, claim, insert, unique

WAITING_ONLY = (JobState.WAITING,)
COMPLETED_ONLY = (JobState.COMPLETED,)


@pytest.fixture
async def backend(db_url: str) -> AsyncIterator[Backend]:
    backend = make_backend(parse_url(db_url))
    await backend.open()
    await backend.migrate()
    yield backend
    await backend.close()


async def _forget_versions_from_3(db_url: str) -> None:
    """As if the schema were at version 2 (later migrations are applied again after 0003:
    PostgreSQL's can be; SQLite's 0004 and 0005, whose ALTER TABLE cannot say IF NOT EXISTS,
    are undone)."""
    url = parse_url(db_url)
    if url.dsn is None:  # SQLite
        with closing(sqlite3.connect(db_url.removeprefix("sqlite:///"))) as raw, raw:
            raw.execute("DELETE FROM aiojobs_schema WHERE version >= 3")
            raw.execute("ALTER TABLE aiojobs_queues DROP COLUMN rate_limit")
            raw.execute("ALTER TABLE aiojobs_queues DROP COLUMN rate_period")
            raw.execute("DROP TABLE aiojobs_rate_windows")
            raw.execute("DROP INDEX aiojobs_jobs_key_held")  # 0005's
            raw.execute("DROP INDEX aiojobs_jobs_key_due")
            raw.execute("ALTER TABLE aiojobs_jobs DROP COLUMN concurrency_key")
            for column in ("concurrency_per_key", "rate_limit_per_key", "rate_period_per_key"):
                raw.execute(f"ALTER TABLE aiojobs_queues DROP COLUMN {column}")
        return
    conn = await asyncpg.connect(url.dsn)
    try:
        await conn.execute(f'DELETE FROM "{url.schema}".aiojobs_schema WHERE version >= 3')
    finally:
        await conn.close()


def legacy(key: str, states: tuple[JobState, ...], queue: str = "default") -> JobInsert:
    return replace(unique(key, states=states), queue=queue)


async def test_0003_gives_legacy_unique_jobs_every_pending_state(backend: Backend, db_url: str) -> None:
    assert backend.latest_version >= 3
    # "a": held while waiting only. Its first job ran on an engine that died; a second one,
    # enqueued meanwhile, waits and holds the key: the rescue (running -> waiting) conflicts.
    (orphan,) = await backend.job_insert_many([legacy("a", WAITING_ONLY)], now=T0)
    (claimed,) = await backend.job_claim(claim("dead-engine", ("default", 1), at=T0))
    await backend.job_start_many([JobStart(claimed.id, claimed.claim_token or "")], now=T0)
    (waiter,) = await backend.job_insert_many([legacy("a", WAITING_ONLY, queue="later")], now=T0)
    # "c": held once completed only, so two jobs wait with one key; "e": a current holder
    # with the default states, and a legacy job beside it; "g": a legacy job on its own.
    c1, c2 = await backend.job_insert_many([legacy("c", COMPLETED_ONLY), legacy("c", COMPLETED_ONLY)], now=T0)
    assert c1.id != c2.id
    (e_holder,) = await backend.job_insert_many([unique("e")], now=T0)
    (e_legacy,) = await backend.job_insert_many([legacy("e", COMPLETED_ONLY)], now=T0)
    (g,) = await backend.job_insert_many([legacy("g", (JobState.WAITING, JobState.COMPLETED), queue="later")],
                                         now=T0)
    (plain,) = await backend.job_insert_many([insert(queue="later")], now=T0)
    with pytest.raises(BackendError):  # what the reaper met on every pass
        await backend.job_rescue(retention=KEEP, stale_after=10, now=T0)

    await _forget_versions_from_3(db_url)
    assert await backend.migrate() == list(range(3, backend.latest_version + 1))

    rescued = await backend.job_rescue(retention=KEEP, stale_after=10, now=T0)
    assert [j.id for j in rescued.retried] == [orphan.id]
    # Who holds each key now: the job that held it (else the oldest); the others hold none.
    (a,) = await backend.job_insert_many([unique("a")], now=T0)
    (c,) = await backend.job_insert_many([unique("c")], now=T0)
    (e,) = await backend.job_insert_many([unique("e")], now=T0)
    (g_again,) = await backend.job_insert_many([unique("g")], now=T0)
    assert (a.id, c.id, e.id, g_again.id) == (waiter.id, c1.id, e_holder.id, g.id)
    assert all(r.existing for r in (a, c, e, g_again))
    # Nothing was lost or changed but the unique states.
    jobs = {j.id: j for j in await backend.job_list(JobFilter())}
    assert set(jobs) == {orphan.id, waiter.id, c1.id, c2.id, e_holder.id, e_legacy.id, g.id, plain.id}
    assert all(j.state is JobState.WAITING for j in jobs.values())
    assert jobs[orphan.id].unique_key == "a" and jobs[c2.id].unique_key == "c"
    # Every job runs and completes without meeting the index.
    claimed_all = await backend.job_claim(claim("e1", ("default", 20), ("later", 20), at=T0))
    assert {j.id for j in claimed_all} == set(jobs)
    await backend.job_start_many([JobStart(j.id, j.claim_token or "") for j in claimed_all], now=T0)
    accepted = await backend.job_finish_many([
        JobOutcome(id=j.id, token=j.claim_token or "", from_state=JobState.RUNNING, state=JobState.COMPLETED,
                   result_json="1") for j in claimed_all], retention=KEEP, now=T0)
    assert accepted == set(jobs)
    (c_done,) = await backend.job_insert_many([unique("c")], now=T0)
    assert c_done.id == c1.id and c_done.state is JobState.COMPLETED  # "c" is held once completed too
