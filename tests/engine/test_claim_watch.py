"""The claim watcher: a run whose job was taken away elsewhere stops within a poll.

Two Engine objects on one database stand for two processes: the second has no line to the
first but the database (on SQLite there is no notification at all), so only the watcher's
poll can tell the first that its run was replaced or deleted.
"""

from __future__ import annotations

import asyncio

from aiojobs_engine import FrozenClock, JobState, UniqueConfig


async def test_a_run_replaced_elsewhere_is_stopped_and_its_replacement_runs(make_engine) -> None:
    stuck = UniqueConfig(key="report-7", on_conflict="replace", replace_running_after=0.2)
    clock = FrozenClock()  # the stored times of both engines: a run gets stuck when the test says so
    worker, web = make_engine(clock=clock), make_engine(clock=clock)
    started, stopped = asyncio.Event(), asyncio.Event()
    for engine in (worker, web):

        @engine.job(name="report", unique=stuck)
        async def report(n: int) -> int:
            if n == 1:
                started.set()
                try:
                    await asyncio.Event().wait()  # stuck for ever
                except asyncio.CancelledError:
                    stopped.set()
                    raise
            return n

    async with worker, web:
        first = await web.enqueue("report", 1)
        assert first is not None
        async with worker.running():
            await asyncio.wait_for(started.wait(), 5)
            clock.advance(0.3)  # now it has run past replace_running_after: stuck
            second = await web.enqueue("report", 2)
            assert second is not None and second.id != first.id
            await asyncio.wait_for(stopped.wait(), 5)  # the stuck body was stopped here
            done = await worker.wait_for(second.id, timeout=5)
        assert done.state is JobState.COMPLETED and done.result == 2
        old = await worker.get_job(first.id)
        assert old is not None and old.state is JobState.CANCELED  # its end was refused


async def test_a_run_whose_job_was_deleted_elsewhere_is_stopped(make_engine) -> None:
    worker, other = make_engine(), make_engine()
    started, stopped = asyncio.Event(), asyncio.Event()

    @worker.job(name="long")
    async def long() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped.set()
            raise

    async with worker, other:
        record = await long.enqueue()
        async with worker.running():
            await asyncio.wait_for(started.wait(), 5)
            # A row deleted behind the engine's back (by hand, or by a tool that ignores the
            # engine's rules): the run must not go on for ever.
            await _delete_row(other, record.id)
            await asyncio.wait_for(stopped.wait(), 5)
        assert await worker.get_job(record.id) is None


async def _delete_row(engine, job_id: int) -> None:
    backend = engine._backend
    if backend.capabilities.dialect == "sqlite":
        await backend._fetch("DELETE FROM aiojobs_jobs WHERE id = :id", {"id": job_id})
    else:
        pool = backend._db._require_pool()
        await pool.execute(f'DELETE FROM "{backend._schema}".aiojobs_jobs WHERE id = $1', job_id)
