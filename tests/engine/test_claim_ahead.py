"""Claiming ahead (opt-in, ``claim_ahead_under``): quick queues keep the next jobs at hand,
never past their concurrency, and claims still parked when the engine stops go back to
waiting, their attempt unused."""

from __future__ import annotations

import asyncio

from aiojobs_engine import JobState, QueueConfig

from .test_run import wait_until


async def _states(engine, ids: list[int]) -> dict[int, JobState]:
    return {i: (await engine.get_job(i)).state for i in ids}


async def test_parked_claims_wait_for_a_slot_and_are_handed_back_at_stop(make_engine) -> None:
    engine = make_engine(queues={"q": QueueConfig(concurrency=1)}, shutdown_grace=5.0, claim_ahead_under=0.05)
    release = asyncio.Event()
    running_now = 0
    most_at_once = 0

    @engine.job(queue="q")
    async def quick() -> None:
        nonlocal running_now, most_at_once
        running_now += 1
        most_at_once = max(most_at_once, running_now)
        await asyncio.sleep(0)
        running_now -= 1

    @engine.job(queue="q")
    async def blocker() -> None:
        nonlocal running_now, most_at_once
        running_now += 1
        most_at_once = max(most_at_once, running_now)
        await release.wait()
        running_now -= 1

    async with engine:
        runner = asyncio.create_task(engine.run())
        # Quick jobs first: the queue's recent attempts are short, so it may claim ahead.
        warm = [(await quick.enqueue()).id for _ in range(5)]
        await wait_until(lambda: _count(engine, warm, JobState.COMPLETED, 5))

        block = (await blocker.enqueue()).id
        later = [(await quick.enqueue()).id for _ in range(3)]

        async def all_parked() -> bool:
            # Jobs that take no time: the queue holds a full claim batch beyond its one slot.
            states = await _states(engine, [block, *later])
            # Parked, not started: claimed, their attempt not counted yet.
            held = [i for i in later if states[i] is JobState.CLAIMED]
            return states[block] is JobState.RUNNING and len(held) == len(later)

        await wait_until(all_parked)
        await asyncio.sleep(0.2)  # the parked claims do not start while the slot is taken
        assert most_at_once == 1

        stopping = asyncio.create_task(engine.stop())
        for parked in later:
            await wait_until(lambda parked=parked: _is(engine, parked, JobState.WAITING))
        release.set()
        await asyncio.wait_for(stopping, 10)
        await asyncio.wait_for(runner, 10)

        for parked in later:
            record = await engine.get_job(parked)
            assert record.state is JobState.WAITING and record.attempt == 0 and record.errors == []
        assert (await engine.get_job(block)).state is JobState.COMPLETED
        assert most_at_once == 1

        await engine.workoff()  # nothing was lost
        assert set((await _states(engine, later)).values()) == {JobState.COMPLETED}


async def _is(engine, job_id: int, state: JobState) -> bool:
    return (await engine.get_job(job_id)).state is state


async def test_no_claiming_ahead_when_disabled_or_jobs_are_slow(make_engine) -> None:
    engine = make_engine(queues={"q": QueueConfig(concurrency=2)}, claim_ahead_under=0)
    release = asyncio.Event()

    @engine.job(queue="q")
    async def quick() -> None:
        return None

    @engine.job(queue="q")
    async def blocker() -> None:
        await release.wait()

    async with engine, engine.running():
        warm = [r.id for r in await engine.enqueue_many([quick.new() for _ in range(5)])]
        await wait_until(lambda: _count(engine, warm, JobState.COMPLETED, 5))
        ids = [(await blocker.enqueue()).id for _ in range(2)] + [(await quick.enqueue()).id for _ in range(3)]
        if True:
            await wait_until(lambda: _count(engine, ids, JobState.RUNNING, 2))
            await asyncio.sleep(0.3)
            assert sum(s is not JobState.WAITING for s in (await _states(engine, ids)).values()) == 2
            release.set()
            await wait_until(lambda: _count(engine, ids, JobState.COMPLETED, 5))


async def _count(engine, ids: list[int], state: JobState, expected: int) -> bool:
    return sum(s is state for s in (await _states(engine, ids)).values()) == expected


async def test_cancel_of_a_parked_claim_cancels_it_without_running_it(make_engine) -> None:
    engine = make_engine(queues={"q": QueueConfig(concurrency=1)}, claim_ahead_under=0.05)
    release = asyncio.Event()
    ran: list[str] = []

    @engine.job(queue="q")
    async def quick(tag: str) -> None:
        ran.append(tag)

    @engine.job(queue="q")
    async def blocker() -> None:
        await release.wait()

    async with engine, engine.running():
        warm = [r.id for r in await engine.enqueue_many([quick.new("warm") for _ in range(5)])]
        await wait_until(lambda: _count(engine, warm, JobState.COMPLETED, 5))
        block = (await blocker.enqueue()).id
        victim = (await quick.enqueue("victim")).id
        if True:
            await wait_until(lambda: _is(engine, victim, JobState.CLAIMED))  # claimed ahead, not started
            assert await engine.cancel(victim)
            await wait_until(lambda: _is(engine, victim, JobState.CANCELED))
            release.set()
            await wait_until(lambda: _is(engine, block, JobState.COMPLETED))
        assert "victim" not in ran
