"""An injected clock drives every stored time; a global cap holds across engines."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from aiojobs_engine import FrozenClock, JobState, QueueConfig, Retry, Snooze, current_job
from tests._waiting import eventually


async def test_a_frozen_clock_moves_delays_snoozes_and_backoffs(make_engine) -> None:
    clock = FrozenClock(datetime(2030, 1, 1, tzinfo=UTC))
    engine = make_engine(clock=clock)
    runs = []

    @engine.job(max_attempts=3)
    async def job(kind: str) -> str:
        runs.append((kind, current_job().attempt))
        if kind == "snooze" and len([r for r in runs if r[0] == "snooze"]) == 1:
            raise Snooze(300)
        if kind == "retry" and current_job().attempt == 1:
            raise Retry(delay=120)
        return kind

    async with engine:
        delayed = await job.options(delay=60).enqueue("delayed")
        snoozing = await job.enqueue("snooze")
        retrying = await job.enqueue("retry")
        assert delayed and snoozing and retrying
        assert delayed.available_at == datetime(2030, 1, 1, 0, 1, tzinfo=UTC)
        assert await engine.workoff() == 2  # the delayed job is not due yet
        clock.advance(61)
        assert await engine.workoff() == 1
        clock.advance(60)
        assert await engine.workoff() == 1  # the retry came due at +120 s
        clock.advance(180)
        assert await engine.workoff() == 1  # the snooze came due at +300 s
        for record in (delayed, snoozing, retrying):
            done = await engine.get_job(record.id)
            assert done and done.state is JobState.COMPLETED
        done = await engine.get_job(retrying.id)
        assert done and done.completed_at == datetime(2030, 1, 1, 0, 2, 1, tzinfo=UTC)


async def test_global_concurrency_caps_a_queue_across_engines(make_engine) -> None:
    active = 0
    peak = 0

    async def body() -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.05)
        active -= 1

    engines = [make_engine(), make_engine()]
    for engine in engines:
        engine.job(name="capped")(_wrap(body))
    async with engines[0]:
        await engines[0].set_queue("default", concurrency=5, global_concurrency=2)
        await engines[0].enqueue_many([engines[0].new("capped") for _ in range(12)])
        async with engines[0].running(), engines[1].running():
            async def all_done() -> bool:
                counts = await engines[0].count_jobs()
                return counts.get(("default", JobState.COMPLETED), 0) == 12

            await eventually(all_done, timeout=10, message="12 jobs completed")
    assert peak == 2


def _wrap(body):
    async def capped() -> None:
        await body()

    return capped


async def test_a_capped_queue_drains_without_waiting_for_polls(make_engine) -> None:
    """A cap below the engine's free slots cuts claims short; the queue must still drain as
    its jobs end, not one batch per poll interval (the poll here is 5 s)."""
    engine = make_engine(poll_interval=5.0)

    @engine.job(name="capped")
    async def capped() -> None:
        await asyncio.sleep(0.01)

    async with engine:
        await engine.set_queue("default", concurrency=5, global_concurrency=3)
        records = await engine.enqueue_many([capped.new() for _ in range(30)])
        async with engine.running():
            started = time.monotonic()
            for record in records:
                done = await engine.wait_for(record.id, timeout=20)
                assert done.state is JobState.COMPLETED
            elapsed = time.monotonic() - started
    # Ideal: 10 rounds of 10 ms. One batch per poll would take 10 polls (50 s).
    assert elapsed < 4.0, f"30 jobs under a cap of 3 took {elapsed:.1f}s"


async def test_a_capped_queues_slot_is_free_once_the_outcome_is_stored_not_after_the_hooks(make_engine) -> None:
    ends: list[float] = []
    every_body_ended = asyncio.Event()

    async def slow_hook(record, result) -> None:
        await every_body_ended.wait()  # a hook that ends only once the last body has ended

    engine = make_engine(queues={"default": QueueConfig(concurrency=1)})

    @engine.job(name="capped", on_success=slow_hook)
    async def capped() -> None:
        ends.append(time.monotonic())
        if len(ends) == 4:
            every_body_ended.set()

    async with engine:
        await engine.set_queue("default", global_concurrency=5)
        await engine.enqueue_many([capped.new() for _ in range(4)])
        started = time.monotonic()
        # The hooks of one job overlap the next job: a slot held until its job's hooks end
        # would never let the next body run, and this workoff would not end.
        async with asyncio.timeout(10):
            assert await engine.workoff() == 4
    assert ends[-1] - started < 1.2, f"bodies ended at {[round(e - started, 2) for e in ends]}"
