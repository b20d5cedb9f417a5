"""Rate limits per queue: at most n starts in any window, across engines, on both backends."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from aiojobs_engine import ConfigurationError, JobState, QueueConfig
from tests._waiting import eventually


def most_in_any_window(starts: list[datetime], seconds: float) -> int:
    """The largest number of ``starts`` inside one window of ``seconds`` (closed at its end)."""
    ordered = sorted(starts)
    most, first = 0, 0
    for last, moment in enumerate(ordered):
        while ordered[first] <= moment - timedelta(seconds=seconds):
            first += 1
        most = max(most, last - first + 1)
    return most


def test_most_in_any_window() -> None:
    t = datetime(2030, 1, 1)
    at = [t + timedelta(seconds=s) for s in (0, 0.1, 0.9, 1.0, 1.05, 2.5)]
    assert most_in_any_window(at, 1.0) == 4  # 0.1, 0.9, 1.0, 1.05: 0 has left the window at 1.0
    assert most_in_any_window(at, 0.2) == 3  # 0.9, 1.0, 1.05
    assert most_in_any_window(at, 0.1) == 2  # 1.0, 1.05 (0.9 has left at 1.0)


async def test_engines_together_never_start_more_than_the_limit(make_engine) -> None:
    engines = [make_engine(queues={"api": QueueConfig(concurrency=20, rate_limit=(5, 0.5))}) for _ in range(3)]
    ran: list[int] = []
    for engine in engines:
        @engine.job(queue="api", name="call")
        async def call(n: int) -> None:
            ran.append(n)

    async with engines[0]:
        await engines[0].enqueue_many([engines[0].new("call", n) for n in range(20)])
        async with engines[0].running(), engines[1].running(), engines[2].running():
            await eventually(lambda: len(ran) >= 20, timeout=30, message="every job ran")
        jobs = await engines[0].list_jobs(limit=100)
    assert sorted(ran) == list(range(20))
    assert {(j.state, j.attempt) for j in jobs} == {(JobState.COMPLETED, 1)}
    starts = [j.attempted_at for j in jobs if j.attempted_at is not None]
    assert most_in_any_window(starts, 0.5) <= 5
    # 20 starts at 5 per half second span at least three full windows.
    assert max(starts) - min(starts) >= timedelta(seconds=1.5)


async def test_a_limited_queue_starts_again_as_its_window_opens(make_engine) -> None:
    """A window of 2 s with a poll interval of 10 s: the second batch starts when the
    window opens, not at the next poll."""
    engine = make_engine(poll_interval=10.0, queues={"api": QueueConfig(rate_limit=(3, 2.0))})
    starts: list[float] = []

    @engine.job(queue="api")
    async def call() -> None:
        starts.append(asyncio.get_running_loop().time())

    async with engine:
        await engine.enqueue_many([call.new() for _ in range(6)])
        async with engine.running():
            await eventually(lambda: len(starts) == 6, timeout=8, message="both windows' jobs ran")
    first, second = sorted(starts)[:3], sorted(starts)[3:]
    assert second[0] - first[0] >= 1.9  # held back by the window (not charged: attempt 1 each)
    assert second[0] - first[0] < 5.0  # ... but well before the next poll


async def test_workoff_waits_for_the_window_rather_than_leaving_due_jobs(make_engine) -> None:
    engine = make_engine(queues={"api": QueueConfig(rate_limit=(2, 0.3))})

    @engine.job(queue="api")
    async def call() -> None: ...

    async with engine:
        await engine.enqueue_many([call.new() for _ in range(5)])
        assert await engine.workoff() == 5
        assert {j.state for j in await engine.list_jobs()} == {JobState.COMPLETED}


async def test_set_queue_changes_and_removes_the_limit_while_engines_run(make_engine) -> None:
    engine = make_engine()
    starts: list[float] = []

    @engine.job(queue="api")
    async def call() -> None:
        starts.append(asyncio.get_running_loop().time())

    async with engine:
        record = await engine.set_queue("api", rate_limit=(1, 30.0))
        assert record.rate_limit == (1, 30.0)
        assert (await engine.set_queue("api", priority=3)).rate_limit == (1, 30.0)  # left out: unchanged
        await engine.enqueue_many([call.new() for _ in range(3)])
        async with engine.running():
            await eventually(lambda: len(starts) == 1, timeout=5, message="one start in the window")
            assert (await engine.set_queue("api", rate_limit=None)).rate_limit is None
            await eventually(lambda: len(starts) == 3, timeout=5, message="the rest once the limit is gone")
        assert [q.rate_limit for q in await engine.list_queues() if q.name == "api"] == [None]


@pytest.mark.parametrize(("bad", "message"), [
    ((0, 1.0), "rate_limit's starts must be between 1 and 10000"),
    ((20_000, 1.0), "rate_limit's starts must be between 1 and 10000"),
    ((5, 0), "rate_limit's window must be > 0 seconds"),
    ((5, 0.0001), "between 0.001 and 86400 seconds"),
    ((5, 100_000), r"between 0.001 and 86400 seconds \(a day\)"),
    ((5,), r"rate_limit must be \(starts, seconds\)"),
    ("20/1s", r"rate_limit must be \(starts, seconds\)"),
])
async def test_bad_rate_limits_are_refused(make_engine, bad: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        QueueConfig(rate_limit=bad)  # type: ignore[arg-type]
    engine = make_engine()
    async with engine:
        with pytest.raises(ConfigurationError, match=message):
            await engine.set_queue("api", rate_limit=bad)  # type: ignore[arg-type]


async def test_blocking_jobs_of_a_limited_queue_start_once_each(make_engine) -> None:
    """A limited claim starts its jobs itself, also those that wait for a thread slot or a
    hook first: their own start is then the same start, not a second attempt."""
    engine = make_engine(thread_workers=1, queues={"api": QueueConfig(rate_limit=(3, 0.3))})
    gate_calls: list[int] = []

    @engine.job(queue="api")
    def blocking(n: int) -> int:
        return n

    async def okay(record) -> bool:  # type: ignore[no-untyped-def]
        gate_calls.append(record.id)
        return True

    @engine.job(queue="api", okay_to_run=okay)
    async def gated(n: int) -> int:
        return n

    async with engine:
        await engine.enqueue_many([blocking.new(n) for n in range(4)] + [gated.new(n) for n in range(3)])
        assert await engine.workoff() == 7
        jobs = await engine.list_jobs()
    assert {(j.state, j.attempt) for j in jobs} == {(JobState.COMPLETED, 1)}
    assert len(gate_calls) == 3
    assert most_in_any_window([j.attempted_at for j in jobs if j.attempted_at], 0.3) <= 3


async def test_workoff_does_not_wait_out_a_window_its_last_jobs_filled(make_engine) -> None:
    engine = make_engine(queues={"api": QueueConfig(rate_limit=(2, 30.0))})

    @engine.job(queue="api")
    async def call() -> None: ...

    async with engine:
        await engine.enqueue_many([call.new(), call.new()])
        began = asyncio.get_running_loop().time()
        assert await engine.workoff() == 2
        assert asyncio.get_running_loop().time() - began < 10  # not the 30 s window: nothing was held back


async def test_workoff_under_a_frozen_clock_leaves_what_the_window_holds_back(make_engine) -> None:
    from aiojobs_engine import FrozenClock

    clock = FrozenClock()
    engine = make_engine(clock=clock, queues={"api": QueueConfig(rate_limit=(2, 1.0))})

    @engine.job(queue="api")
    async def call() -> None: ...

    async with engine:
        await engine.enqueue_many([call.new() for _ in range(3)])
        assert await engine.workoff() == 2  # frozen time never opens the window: it returns
        clock.advance(1.5)
        assert await engine.workoff() == 1
        assert {j.state for j in await engine.list_jobs()} == {JobState.COMPLETED}


async def test_a_shorter_limit_takes_over_from_a_long_wait(make_engine) -> None:
    engine = make_engine(queues={"api": QueueConfig(rate_limit=(1, 3600.0))})
    starts: list[int] = []

    @engine.job(queue="api")
    async def call(n: int) -> None:
        starts.append(n)

    async with engine:
        await engine.enqueue_many([call.new(n) for n in range(4)])
        async with engine.running():
            await eventually(lambda: len(starts) == 1, timeout=5, message="one start in the hour")
            await engine.set_queue("api", rate_limit=(5, 1.0))
            await eventually(lambda: len(starts) == 4, timeout=5, message="the rest under the new limit")
