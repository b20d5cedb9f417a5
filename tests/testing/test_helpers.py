"""aiojobs_engine.testing: enqueue assertions, draining, moving a frozen clock, inline mode."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from aiojobs_engine import ConfigurationError, Engine, FrozenClock, Job, JobState, Snooze, current_job
from aiojobs_engine.testing import (
    PENDING,
    advance,
    all_enqueued,
    assert_enqueued,
    drain,
    inline,
    refute_enqueued,
    tick,
    workoff,
)

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def declare(engine: Engine):
    """A few jobs on ``engine``: a function, a class and a blocking one."""

    @engine.job(queue="email")
    async def send_welcome(user_id: int, *, template: str = "plain") -> dict:
        return {"sent_to": user_id, "template": template}

    @engine.job
    class Export(Job):
        def __init__(self, tenant: str) -> None:
            self.tenant = tenant

        async def run(self, month: str) -> str:
            return f"{self.tenant}:{month}"

    return send_welcome, Export


# -- what was enqueued -------------------------------------------------------------------


async def test_assert_enqueued_matches_handles_classes_and_names(make_engine) -> None:
    engine = make_engine()
    send_welcome, export = declare(engine)
    async with engine:
        await send_welcome.enqueue(1)
        await send_welcome.options(meta={"team": "growth"}).enqueue(2, template="fancy")
        await export.options(constructor_args=["acme"]).enqueue("2030-01")

        matched = await assert_enqueued(send_welcome, args=[2])
        assert [r.kwargs for r in matched] == [{"template": "fancy"}]
        await assert_enqueued(send_welcome, count=2, queue="email")
        await assert_enqueued(send_welcome, kwargs={"template": "fancy"}, meta={"team": "growth"}, count=1)
        await assert_enqueued(send_welcome.options(priority=1), args=(1,))  # any handle of the job; tuples are lists
        await assert_enqueued(export, args=["2030-01"])
        await assert_enqueued("Export", engine=engine, count=1)
        await refute_enqueued(send_welcome, args=[3])
        await refute_enqueued(send_welcome, queue="default")
        await refute_enqueued(export, args=["2030-02"])

        everything = await all_enqueued(engine=engine)
        assert [(r.name, r.args) for r in everything] == [("send_welcome", [1]), ("send_welcome", [2]),
                                                        ("Export", ["2030-01"])]  # oldest first


async def test_pending_by_default_any_state_on_request(make_engine) -> None:
    engine = make_engine()
    send_welcome, _ = declare(engine)
    async with engine:
        await send_welcome.enqueue(1)
        await engine.workoff()
        await refute_enqueued(send_welcome)  # it ran: no longer pending
        await assert_enqueued(send_welcome, state=JobState.COMPLETED, count=1)
        await assert_enqueued(send_welcome, state="completed", args=[1])
        await assert_enqueued(send_welcome, state=None, count=1)
        delayed = await send_welcome.options(delay=3600).enqueue(2)
        assert delayed
        assert [r.id for r in await all_enqueued(send_welcome, state=PENDING)] == [delayed.id]


async def test_failures_say_what_was_expected_and_what_is_there(make_engine) -> None:
    engine = make_engine()
    send_welcome, export = declare(engine)
    async with engine:
        with pytest.raises(AssertionError) as nothing:
            await assert_enqueued(send_welcome, args=[2])
        assert str(nothing.value) == (
            "expected at least one send_welcome job with args [2] in state waiting/snoozed; found none\n"
            "the database holds no job at all (was the job enqueued on this engine, on this database?)"
        )

        await send_welcome.enqueue(1)
        with pytest.raises(AssertionError) as other_args:
            await assert_enqueued(send_welcome, args=[2])
        lines = str(other_args.value).splitlines()
        assert lines[0] == "expected at least one send_welcome job with args [2] in state waiting/snoozed; found none"
        assert lines[1] == "send_welcome jobs in state waiting/snoozed (1):"
        assert re.fullmatch(r"  #\d+ send_welcome args=\[1\] kwargs=\{\} queue='email' state=waiting "
                            r"available_at=\S+", lines[2]), lines

        # Not the job asked for at all: the jobs that are there, whatever their name.
        with pytest.raises(AssertionError) as other_job:
            await assert_enqueued(export, args=["2030-01"])
        lines = str(other_job.value).splitlines()
        assert lines[0] == "expected at least one Export job with args ['2030-01'] in state waiting/snoozed; found none"
        assert lines[1] == "no Export job is in state waiting/snoozed; the jobs that are (1):"
        assert "send_welcome args=[1]" in lines[2]

        with pytest.raises(AssertionError, match=r"^expected exactly 2 send_welcome jobs in state waiting/snoozed; "
                                                 r"found 1\nmatching \(1\):\n  #\d+ send_welcome args=\[1\]"):
            await assert_enqueued(send_welcome, count=2)
        with pytest.raises(AssertionError, match=r"^expected no send_welcome job in state waiting/snoozed; "
                                                 r"found 1\nmatching \(1\):\n  #\d+ send_welcome args=\[1\]"):
            await refute_enqueued(send_welcome)
        await assert_enqueued(send_welcome, args=[2], count=0)  # count=0 is a refutation

        # It ran, so nothing is pending: say where the jobs went.
        assert await engine.workoff() == 1
        with pytest.raises(AssertionError) as ran:
            await assert_enqueued(send_welcome, args=[1])
        assert str(ran.value).splitlines()[1:] == [
            "no job at all is in state waiting/snoozed; the database holds: 1 completed"]


async def test_helpers_reject_what_they_cannot_use(make_engine) -> None:
    engine = make_engine()
    send_welcome, _ = declare(engine)

    class Undeclared(Job):
        async def run(self) -> None: ...

    async with engine:
        with pytest.raises(ConfigurationError, match="pass engine="):
            await assert_enqueued("send_welcome")
        with pytest.raises(ConfigurationError, match="pass engine="):
            await all_enqueued()
        with pytest.raises(ConfigurationError, match="count must be an int >= 0, got -1"):
            await assert_enqueued(send_welcome, count=-1)
        with pytest.raises(ConfigurationError, match="unknown job state"):
            await all_enqueued(send_welcome, state="done")
        with pytest.raises(ConfigurationError, match="not declared as a job"):
            await all_enqueued(Undeclared)
        with pytest.raises(ConfigurationError, match="job must be a job handle"):
            await all_enqueued(42, engine=engine)  # type: ignore[arg-type]


# -- draining and time -------------------------------------------------------------------


async def test_drain_runs_what_is_due_and_with_include_delayed_everything(make_engine) -> None:
    clock = FrozenClock(T0)
    engine = make_engine(clock=clock)
    runs: list[tuple[str, int, datetime]] = []

    @engine.job(max_attempts=3, retry=lambda attempt: 60.0 * attempt)
    async def work(kind: str) -> str:
        runs.append((kind, current_job().attempt, clock.now()))
        if kind == "flaky" and current_job().attempt < 3:
            raise RuntimeError("not yet")
        if kind == "snoozer" and len([r for r in runs if r[0] == "snoozer"]) == 1:
            raise Snooze(600)
        return kind

    async with engine:
        await work.enqueue("now")
        await work.options(delay=3600).enqueue("later")
        flaky = await work.enqueue("flaky")
        await work.enqueue("snoozer")
        assert await drain(engine) == 3  # now, flaky's first attempt, snoozer's first run
        assert await drain(engine, include_delayed=True) == 4  # flaky twice more, the snooze, the delay
        assert flaky and (await engine.get_job(flaky.id)).state is JobState.COMPLETED  # type: ignore[union-attr]
        assert [(k, a, t - T0) for k, a, t in runs if k == "flaky"] == [
            ("flaky", 1, timedelta(0)), ("flaky", 2, timedelta(seconds=60)), ("flaky", 3, timedelta(seconds=180))]
        assert ("later", 1, T0 + timedelta(hours=1)) in runs
        assert clock.now() == T0 + timedelta(hours=1)  # the clock stops at the last job's time
        await refute_enqueued(engine=engine)


async def test_workoff_is_the_documented_name_and_drain_its_alias(make_engine) -> None:
    import aiojobs_engine.testing as testing

    assert testing.drain is workoff and {"workoff", "drain"} <= set(testing.__all__)
    clock = FrozenClock(T0)
    engine = make_engine(clock=clock)

    @engine.job(max_attempts=2, retry=lambda attempt: 30.0)
    async def flaky(n: int) -> int:
        if current_job().attempt == 1:
            raise RuntimeError("not yet")
        return n

    async with engine:
        soon = await flaky.options(delay=60).enqueue(1)
        assert await workoff(engine) == 0  # only what is due now: nothing
        assert await workoff(engine, include_delayed=True) == 2  # the delay, the retry's backoff
        done = await engine.get_job(soon.id)  # type: ignore[union-attr]
        assert done and done.state is JobState.COMPLETED and done.result == 1
        assert clock.now() == T0 + timedelta(seconds=90)
    with pytest.raises(ConfigurationError, match=r"workoff\(include_delayed=True\) moves the engine's clock"):
        await workoff(make_engine(), include_delayed=True)


async def test_drain_with_delays_plays_retries_out_to_failure(make_engine) -> None:
    engine = make_engine(clock=FrozenClock(T0))

    @engine.job(max_attempts=4)
    async def always_fails() -> None:
        raise ValueError("broken")

    async with engine:
        record = await always_fails.enqueue()
        assert record
        assert await drain(engine, include_delayed=True) == 4  # the default backoff, with jitter, without sleeping
        failed = await engine.get_job(record.id)
        assert failed and failed.state is JobState.FAILED and len(failed.errors) == 4


async def test_drain_leaves_paused_queues_and_stops_endless_snoozers(make_engine) -> None:
    engine = make_engine(clock=FrozenClock(T0))

    @engine.job
    async def sleepy() -> None:
        raise Snooze(10)

    async with engine:
        await sleepy.options(queue="paused").enqueue()
        await engine.pause_queue("paused")
        assert await drain(engine, include_delayed=True) == 0
        await engine.resume_queue("paused")
        with pytest.raises(AssertionError, match="jobs kept coming due after 5 steps"):
            await drain(engine, include_delayed=True, max_steps=5)


async def test_moving_time_needs_a_frozen_clock(make_engine) -> None:
    engine = make_engine()
    async with engine:
        for call in (drain(engine, include_delayed=True), advance(engine, 10), tick(engine)):
            with pytest.raises(ConfigurationError, match=r"needs Engine\(clock=FrozenClock\(...\)\)"):
                await call
    frozen = make_engine(clock=FrozenClock(T0))
    async with frozen:
        with pytest.raises(ConfigurationError, match="forward only"):
            await advance(frozen, -1)


async def test_advance_runs_each_job_at_its_own_time(make_engine) -> None:
    clock = FrozenClock(T0)
    engine = make_engine(clock=clock)
    seen: list[timedelta] = []

    @engine.job(max_attempts=100, retry=lambda attempt: 10.0)
    async def poll() -> None:
        seen.append(clock.now() - T0)
        raise RuntimeError("not ready")

    async with engine:
        await poll.enqueue()
        assert await advance(engine, 35) == 4  # at 0, 10, 20 and 30 s
        assert seen == [timedelta(seconds=s) for s in (0, 10, 20, 30)]
        assert clock.now() == T0 + timedelta(seconds=35)
        assert await advance(engine, timedelta(seconds=4)) == 0
        assert await advance(engine, 1) == 1


async def test_cron_ticks_without_sleeping(make_engine) -> None:
    clock = FrozenClock(T0)
    engine = make_engine(clock=clock)
    runs: list[datetime] = []

    @engine.job(schedule="*/15 * * * *")
    async def quarterly() -> None:
        runs.append(clock.now())

    @engine.cron("0 * * * *", name="hourly")
    @engine.job
    async def hourly() -> None: ...

    async with engine:
        enqueued = await tick(engine)  # the next tick of any schedule: 12:15
        assert [job.name for job in enqueued] == ["quarterly"] and runs == [T0 + timedelta(minutes=15)]
        enqueued = await tick(engine, "hourly", run=False)  # 13:00: quarterly's 12:30 and 12:45 are missed
        assert {job.name for job in enqueued} == {"hourly", "quarterly"}
        await assert_enqueued(hourly, count=1)
        assert clock.now() == T0 + timedelta(hours=1)
        assert await drain(engine) == 2
        assert await advance(engine, 3600, schedules=True) == 5  # four quarters and one hour
        assert runs[-4:] == [T0 + timedelta(hours=1, minutes=m) for m in (15, 30, 45, 60)]
        with pytest.raises(ConfigurationError, match="no active schedule named 'nope'"):
            await tick(engine, "nope")
        await engine.pause_schedule("hourly")
        await engine.pause_schedule("quarterly")
        with pytest.raises(ConfigurationError, match="no active schedule"):
            await tick(engine)


# -- inline mode -------------------------------------------------------------------------


async def test_inline_runs_jobs_as_they_are_enqueued(make_engine) -> None:
    engine = make_engine()
    send_welcome, export = declare(engine)
    children: list[int] = []

    @engine.job
    async def parent(n: int) -> str:
        child = await send_welcome.enqueue(n)  # from inside a job: the drain running us runs it next
        assert child and child.state is JobState.WAITING
        children.append(child.id)
        return "parent done"

    async with engine:
        with inline(engine):
            record = await send_welcome.enqueue(5, template="fancy")
            assert record and record.state is JobState.COMPLETED
            assert record.result == {"sent_to": 5, "template": "fancy"}
            by_name = await engine.enqueue("send_welcome", 6)
            assert by_name and by_name.state is JobState.COMPLETED
            done = await export.options(constructor_args=["acme"]).enqueue("2030-02")
            assert done and done.result == "acme:2030-02"
            many = await engine.enqueue_many([send_welcome.new(7), send_welcome.new(8)])
            assert [r.state for r in many if r] == [JobState.COMPLETED] * 2
            top = await parent.enqueue(9)
            assert top and top.result == "parent done"
            child = await engine.get_job(children[0])
            assert child and child.state is JobState.COMPLETED
            later = await send_welcome.options(delay=60).enqueue(10)
            assert later and later.state is JobState.WAITING  # not due: left for drain/advance
        after = await send_welcome.enqueue(11)  # the block is over: plain enqueue again
        assert after and after.state is JobState.WAITING
        assert "enqueue_requests" not in vars(engine)


async def test_inline_on_a_running_engine_waits_for_the_job(make_engine) -> None:
    engine = make_engine()
    send_welcome, _ = declare(engine)
    vetoed = engine.job(name="vetoed", on_before_add=lambda request: False)(_nothing)
    async with engine.running():
        with inline(engine):
            record = await send_welcome.enqueue(1)
            assert record and record.state is JobState.COMPLETED
            assert await vetoed.enqueue() is None


async def test_inline_blocks_nest_and_restore(make_engine) -> None:
    engine = make_engine()
    send_welcome, _ = declare(engine)
    async with engine:
        with inline(engine), inline(engine):
            record = await send_welcome.enqueue(1)
            assert record and record.state is JobState.COMPLETED
        assert "enqueue_requests" not in vars(engine)
        pending = await send_welcome.enqueue(2)
        assert pending and pending.state is JobState.WAITING


async def _nothing() -> None:
    return None
