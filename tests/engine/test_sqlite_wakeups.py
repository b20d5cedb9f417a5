"""SQLite has no LISTEN/NOTIFY; the change watch (``PRAGMA data_version``) stands in for it:
an idle engine starts a job another connection enqueued well within its poll interval."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from aiojobs_engine import Engine, EventKind, JobState
from tests._waiting import events


async def test_a_job_enqueued_by_another_connection_starts_without_waiting_for_the_poll(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    started = asyncio.Event()
    worker = Engine(url, poll_interval=10.0)  # a poll would take up to 10 s
    web = Engine(url)  # another connection, as a web process would have

    @worker.job(name="hello")
    async def hello() -> None:
        started.set()

    @worker.job(name="warm_up", queue="warm-up")
    async def warm_up() -> None: ...

    async with worker, web, events(worker, kinds={EventKind.JOB_COMPLETED}) as seen, worker.running():
        # Its own enqueue wakes the worker directly: once that job is done, its start-up
        # polls are over and it is idle, its next poll 10 s away.
        await warm_up.enqueue()
        await seen.wait_for()
        pickups = []
        for _ in range(3):
            started.clear()
            at = time.monotonic()
            record = await web.enqueue("hello")
            await asyncio.wait_for(started.wait(), 5)
            pickups.append(time.monotonic() - at)
            assert record is not None
            assert (await worker.wait_for(record.id, timeout=5)).state is JobState.COMPLETED
    assert max(pickups) < 1.0, f"pickups took {pickups}"


async def test_an_in_memory_database_has_nothing_to_watch() -> None:
    engine = Engine("sqlite:///:memory:")
    async with engine:
        assert not engine._backend.capabilities.supports_notify
