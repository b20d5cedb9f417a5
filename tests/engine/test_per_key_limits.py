"""Per-key concurrency and per-key rate limits, through the engine, on both backends."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime

import pytest

from aiojobs_engine import ConfigurationError, JobState, QueueConfig
from tests._waiting import eventually
from tests.engine.test_rate_limits import most_in_any_window


async def test_one_job_per_key_at_a_time_across_engines(make_engine) -> None:
    config = {"api": QueueConfig(concurrency=10, concurrency_per_key=1)}
    engines = [make_engine(queues=config) for _ in range(3)]
    active: Counter[str] = Counter()
    most: Counter[str] = Counter()
    together: list[int] = []
    for engine in engines:
        @engine.job(queue="api", name="sync_tenant", concurrency_key=lambda tenant, n: f"tenant:{tenant}")
        async def sync_tenant(tenant: str, n: int) -> None:
            key = f"tenant:{tenant}"
            active[key] += 1
            most[key] = max(most[key], active[key])
            together.append(sum(active.values()))
            await asyncio.sleep(0.01)  # the work: long enough for other engines to try the key
            active[key] -= 1

    async with engines[0]:
        await engines[0].enqueue_many([engines[0].new("sync_tenant", t, n) for n in range(6) for t in "abcd"])
        async with engines[0].running(), engines[1].running(), engines[2].running():
            await eventually(lambda: len(together) >= 24, timeout=30, message="every job ran")
        jobs = await engines[0].list_jobs(limit=100)
    assert set(most.values()) == {1}  # never two of one key at once
    assert max(together) > 1  # while other keys went ahead
    assert {(j.state, j.attempt) for j in jobs} == {(JobState.COMPLETED, 1)}
    assert {j.concurrency_key for j in jobs} == {"tenant:a", "tenant:b", "tenant:c", "tenant:d"}


async def test_a_busy_key_does_not_hold_back_the_others(make_engine) -> None:
    engine = make_engine(queues={"api": QueueConfig(concurrency=5, concurrency_per_key=1)})
    release = asyncio.Event()
    done: list[str] = []

    @engine.job(queue="api")
    async def work(label: str) -> None:
        if label.startswith("slow"):
            await release.wait()
        done.append(label)

    async with engine:
        await engine.enqueue_many([work.options(concurrency_key="big").new(f"slow{n}") for n in range(20)])
        await work.options(concurrency_key="small").enqueue("quick")
        await work.enqueue("no key")
        async with engine.running():
            await eventually(lambda: {"quick", "no key"} <= set(done), timeout=5,
                             message="the other key's job and the keyless one ran past the busy key")
            assert not any(label.startswith("slow") for label in done)

            async def only_the_busy_key_held() -> bool:
                held = await engine.list_jobs(state=[JobState.RUNNING, JobState.CLAIMED])
                return [j.concurrency_key for j in held] == ["big"]

            await eventually(only_the_busy_key_held, timeout=5, message="only the busy key is held")
            release.set()
            await eventually(lambda: len(done) == 22, timeout=10, message="the busy key's jobs ran, one by one")


async def test_one_key_runs_its_jobs_back_to_back_not_a_poll_apart(make_engine) -> None:
    """Each end frees the key's place once its outcome is stored, and that is when the
    engine claims again: not at its next poll (30 s here)."""
    engine = make_engine(poll_interval=30.0, queues={"api": QueueConfig(concurrency_per_key=1)})
    ran: list[int] = []

    @engine.job(queue="api", concurrency_key="one")
    async def step(n: int) -> None:
        ran.append(n)

    async with engine:
        await engine.enqueue_many([step.new(n) for n in range(20)])
        async with engine.running():
            await eventually(lambda: len(ran) == 20, timeout=10, message="20 jobs of one key ran in turn")
    assert ran == list(range(20))


async def test_rate_limit_per_key(make_engine) -> None:
    engine = make_engine(queues={"api": QueueConfig(concurrency=20, rate_limit_per_key=(2, 0.4))})
    starts: dict[str, list[datetime]] = {"a": [], "b": []}

    ran: list[str] = []

    @engine.job(queue="api", concurrency_key=lambda key: key)
    async def call(key: str) -> None:
        ran.append(key)

    async with engine:
        await engine.enqueue_many([call.new(k) for _ in range(6) for k in "ab"])
        async with engine.running():
            await eventually(lambda: len(ran) == 12, timeout=20, message="all ran")
        for job in await engine.list_jobs(limit=100):
            assert job.attempted_at is not None and job.attempt == 1
            starts[job.concurrency_key or ""].append(job.attempted_at)
    for key, times in starts.items():
        assert most_in_any_window(times, 0.4) <= 2, key
    assert most_in_any_window(starts["a"] + starts["b"], 0.4) >= 3  # the keys' windows are apart


async def test_per_key_limits_follow_a_change_while_running(make_engine) -> None:
    engine = make_engine(poll_interval=0.2, queues={"api": QueueConfig(concurrency=10, concurrency_per_key=1)})
    release = asyncio.Event()
    running: set[int] = set()

    @engine.job(queue="api", concurrency_key="shared")
    async def hold(n: int) -> None:
        running.add(n)
        await release.wait()

    async with engine:
        await engine.enqueue_many([hold.new(n) for n in range(4)])
        async with engine.running():
            await eventually(lambda: len(running) == 1, timeout=5, message="one of the key runs")
            stored = await engine.set_queue("api", concurrency_per_key=3)
            assert stored.concurrency_per_key == 3
            await eventually(lambda: len(running) == 3, timeout=5, message="three of the key run")
            await engine.set_queue("api", concurrency_per_key=None)
            await eventually(lambda: len(running) == 4, timeout=5, message="the limit is gone")
            release.set()


async def test_concurrency_key_option_and_its_errors(make_engine) -> None:
    engine = make_engine()

    @engine.job(concurrency_key=lambda user_id, **_: f"user:{user_id}")
    async def notify(user_id: int, text: str = "") -> None: ...

    @engine.job(concurrency_key=lambda n: None if n < 0 else str(n))
    async def maybe(n: int) -> None: ...

    async with engine:
        assert (await notify.enqueue(7, text="hi")).concurrency_key == "user:7"
        assert (await notify.options(concurrency_key="fixed").enqueue(7)).concurrency_key == "fixed"
        assert (await maybe.enqueue(-1)).concurrency_key is None
        assert (await engine.options(concurrency_key="k").enqueue("undeclared")).concurrency_key == "k"
        with pytest.raises(ConfigurationError, match="concurrency_key must be a string"):
            notify.options(concurrency_key=3)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="concurrency_key must be a string"):
            notify.options(concurrency_key="")

        @engine.job(concurrency_key=lambda n: 1 / n)  # type: ignore[arg-type, return-value]
        async def broken(n: int) -> None: ...

        with pytest.raises(ConfigurationError, match=r"job .*broken.*concurrency_key callable .*ZeroDivisionError"):
            await broken.enqueue(0)
        with pytest.raises(ConfigurationError, match=r"the concurrency_key of job .*broken"):
            await broken.enqueue(2)  # returns a float
        assert await engine.list_jobs(name="tests.engine.test_per_key_limits.broken") == []


async def test_queue_settings_are_checked(make_engine) -> None:
    with pytest.raises(ConfigurationError, match="concurrency_per_key"):
        QueueConfig(concurrency_per_key=0)
    with pytest.raises(ConfigurationError, match="rate_limit_per_key"):
        QueueConfig(rate_limit_per_key=(0, 1.0))
    engine = make_engine()
    async with engine:
        with pytest.raises(ConfigurationError, match="rate_limit_per_key"):
            await engine.set_queue("api", rate_limit_per_key=(5, -1.0))
        stored = await engine.set_queue("api", concurrency_per_key=2, rate_limit_per_key=(5, 1.0))
        assert (stored.concurrency_per_key, stored.rate_limit_per_key) == (2, (5, 1.0))
        kept = await engine.set_queue("api", priority=3)
        assert (kept.concurrency_per_key, kept.rate_limit_per_key) == (2, (5, 1.0))


async def test_a_schedule_takes_a_string_key_and_refuses_a_callable(make_engine) -> None:
    engine = make_engine()

    @engine.job
    async def report() -> None: ...

    with pytest.raises(ConfigurationError, match="schedule's concurrency_key must be a string"):
        engine.cron("* * * * *", name="bad", concurrency_key=lambda: "k")(report)
    async with engine:
        with pytest.raises(ConfigurationError, match="schedule's concurrency_key must be a string"):
            await engine.add_schedule("bad", "* * * * *", report.name, concurrency_key=lambda: "k")
        stored = await engine.add_schedule("nightly", "0 3 * * *", report.name, concurrency_key="reports")
        assert stored.options["concurrency_key"] == "reports"
