"""run(), running() and stop(): pickup, graceful and immediate shutdown, cancellation, engine ids."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from aiojobs_engine import Engine, EngineIdInUseError, EngineStateError, JobState
from tests._waiting import backend_calls
from tests.engine._crashes import dead_pid, this_host


async def state_is(engine: Engine, job_id: int, state: JobState) -> bool:
    record = await engine.get_job(job_id)
    return record is not None and record.state is state


async def test_running_engine_picks_up_new_jobs_quickly(make_engine) -> None:
    engine = make_engine(poll_interval=5.0)  # local enqueues wake the dispatcher: no poll needed
    started = asyncio.Event()

    @engine.job
    async def job() -> str:
        started.set()
        return "ok"

    async with engine.running():
        t0 = time.monotonic()
        record = await job.enqueue()
        await asyncio.wait_for(started.wait(), 2)
        assert time.monotonic() - t0 < 1.0
        assert record
        done = await engine.wait_for(record.id, timeout=5)
        assert done.result == "ok"
        engines = await engine.list_engines()
        assert len(engines) == 1 and engines[0].pid > 0


async def test_stop_lets_running_jobs_finish(make_engine) -> None:
    engine = make_engine(shutdown_grace=5.0)
    started = asyncio.Event()

    @engine.job
    async def slow() -> str:
        started.set()
        await asyncio.sleep(0.3)
        return "finished"

    async with engine:
        record = await slow.enqueue()
        runner = asyncio.create_task(engine.run())
        await asyncio.wait_for(started.wait(), 5)
        await engine.stop()
        await runner
        assert record
        done = await engine.get_job(record.id)
        assert done and done.state is JobState.COMPLETED and done.result == "finished"
        assert await engine.list_engines() == []


async def test_jobs_still_running_after_the_grace_period_are_handed_back(make_engine) -> None:
    engine = make_engine(shutdown_grace=0.2)
    started = asyncio.Event()

    @engine.job
    async def endless() -> None:
        started.set()
        await asyncio.sleep(3600)

    async with engine:
        record = await endless.enqueue()
        runner = asyncio.create_task(engine.run())
        await asyncio.wait_for(started.wait(), 5)
        t0 = time.monotonic()
        await engine.stop()
        assert time.monotonic() - t0 < 3
        await runner
        assert record
        back = await engine.get_job(record.id)
        assert back and back.state is JobState.WAITING and back.attempt == 0
        assert back.available_at <= datetime.now(UTC)  # available again at once


async def test_immediate_stop_hands_back_at_once(make_engine) -> None:
    engine = make_engine(shutdown_grace=30.0)
    started = asyncio.Event()

    @engine.job
    async def endless() -> None:
        started.set()
        await asyncio.sleep(3600)

    async with engine:
        record = await endless.enqueue()
        runner = asyncio.create_task(engine.run())
        await asyncio.wait_for(started.wait(), 5)
        t0 = time.monotonic()
        await engine.stop(immediate=True)
        await runner
        assert time.monotonic() - t0 < 5
        assert record
        back = await engine.get_job(record.id)
        assert back and back.state is JobState.WAITING and back.attempt == 0 and back.errors == []


async def test_cancelling_run_hands_jobs_back(make_engine) -> None:
    engine = make_engine(shutdown_grace=30.0)
    started = asyncio.Event()

    @engine.job
    async def endless() -> None:
        started.set()
        await asyncio.sleep(3600)

    async with engine:
        record = await endless.enqueue()
        runner = asyncio.create_task(engine.run())
        await asyncio.wait_for(started.wait(), 5)
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        assert record
        back = await engine.get_job(record.id)
        assert back and back.state is JobState.WAITING and back.attempt == 0


async def test_cancel_a_running_async_job(make_engine) -> None:
    engine = make_engine()
    started = asyncio.Event()
    cleaned_up = asyncio.Event()

    @engine.job
    async def endless() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned_up.set()

    async with engine.running():
        record = await endless.enqueue()
        await asyncio.wait_for(started.wait(), 5)
        assert record
        flagged = await engine.cancel(record.id)
        assert flagged and flagged.state is JobState.RUNNING and flagged.cancel_requested
        final = await engine.wait_for(record.id, timeout=5)
        assert final.state is JobState.CANCELED and cleaned_up.is_set()


async def test_cancel_from_another_engine_reaches_the_running_one(make_engine) -> None:
    worker = make_engine()
    started = asyncio.Event()

    @worker.job
    async def endless() -> None:
        started.set()
        await asyncio.sleep(3600)

    controller = make_engine()
    async with worker.running(), controller:
        record = await endless.enqueue()
        await asyncio.wait_for(started.wait(), 5)
        assert record
        await controller.cancel(record.id)
        final = await controller.wait_for(record.id, timeout=5)
        assert final.state is JobState.CANCELED


async def test_run_twice_and_running_errors(make_engine) -> None:
    engine = make_engine()
    async with engine.running():
        with pytest.raises(EngineStateError, match="already running"):
            await engine.run()
        with pytest.raises(EngineStateError):
            await engine.workoff()


async def test_a_worker_id_in_use_is_refused(make_engine) -> None:
    first = make_engine(worker_id="worker-1")
    second = make_engine(worker_id="worker-1")
    async with first.running():
        with pytest.raises(EngineIdInUseError, match="in use by a live engine"):
            await second.run()


async def test_restart_under_the_same_id_takes_orphans_back_at_once(make_engine) -> None:
    """A restart of a crashed engine (same host, dead pid) re-runs its jobs without waiting."""
    engine = make_engine(worker_id="stable-1", stale_after=3600, heartbeat_interval=0.2)

    @engine.job
    async def job() -> str:
        return "ran"

    async with engine:
        from aiojobs_engine._backends._protocol import EngineRegistration, JobClaim, QueueDemand

        record = await job.enqueue()
        assert record
        crashed = EngineRegistration(id="stable-1", incarnation="old", host=this_host(), pid=dead_pid(), queues=None)
        await engine.backend.engine_register(crashed, stale_after=3600, takeover_incarnation=None)
        await engine.backend.job_claim(JobClaim(engine_id="stable-1", demands=[QueueDemand("default", 10)]))
        assert await state_is(engine, record.id, JobState.CLAIMED)
        t0 = time.monotonic()
        async with engine.running():  # waits until the dead one's heartbeat is two intervals old
            assert time.monotonic() - t0 < 3  # not stale_after (an hour)
            done = await engine.wait_for(record.id, timeout=5)
            assert done.result == "ran"


async def test_running_surfaces_start_up_errors(make_engine) -> None:
    first = make_engine(worker_id="dup")
    second = make_engine(worker_id="dup")
    async with first.running():
        with pytest.raises(EngineIdInUseError):
            async with second.running():
                pass


async def test_queue_changes_made_elsewhere_are_followed_within_a_poll(make_engine) -> None:
    worker = make_engine(poll_interval=0.2)
    runs: list[int] = []

    @worker.job
    async def tick(n: int) -> None:
        runs.append(n)

    controller = make_engine()
    async with worker, backend_calls(worker, "queue_list") as reads, worker.running(), controller:
        first = await controller.enqueue("tick", 1)
        assert first
        await controller.wait_for(first.id, timeout=5)
        await controller.pause_queue("default")
        await reads.more(2)  # the second read began after the pause: the worker has read it
        held = await controller.enqueue("tick", 2)
        assert held
        await reads.more(3)  # a few polls (each reads the queues) in which it could have run
        assert runs == [1] and await state_is(controller, held.id, JobState.WAITING)
        await controller.set_queue("default", concurrency=3)
        await controller.resume_queue("default")
        await controller.wait_for(held.id, timeout=5)
        assert runs == [1, 2]


async def test_a_start_up_that_fails_after_registering_leaves_no_registration(make_engine, monkeypatch) -> None:
    """Taking back an earlier life's jobs fails (the database refuses): the engine does not
    stay registered, so the same worker id can start again at once."""
    from aiojobs_engine._errors import BackendError

    engine = make_engine(worker_id="flaky-1")
    async with engine:
        original = engine.backend.job_rescue

        async def refusing(**kwargs):
            if kwargs.get("engine_id") is not None:
                raise BackendError("refused")
            return await original(**kwargs)

        monkeypatch.setattr(engine.backend, "job_rescue", refusing)
        with pytest.raises(BackendError, match="refused"):
            await engine.run()
        assert await engine.backend.engine_get("flaky-1") is None
        monkeypatch.undo()
        async with engine.running():
            assert engine.is_running
