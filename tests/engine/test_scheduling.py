"""Scheduling and control: uniqueness, retention, recurring jobs — on both backends."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aiojobs_engine import (
    BackendError,
    ConfigurationError,
    DuplicateJobError,
    Engine,
    EventKind,
    FrozenClock,
    Job,
    JobState,
    JobStateError,
    UniqueConfig,
    UniqueConflictError,
)
from aiojobs_engine import _engine as engine_module
from tests._waiting import events

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


# -- uniqueness ---------------------------------------------------------------------------


async def test_unique_jobs_drop_the_newcomer_and_return_the_existing_job(make_engine) -> None:
    engine = make_engine()

    @engine.job(unique=True)
    async def sync_account(account: int) -> None: ...

    async with engine:
        first = await sync_account.enqueue(1)
        again = await sync_account.enqueue(1)
        other = await sync_account.enqueue(2)
        assert first and again and other
        assert again.id == first.id and other.id != first.id
        assert first.unique_key is not None and first.unique_key.startswith("sync_account:")
        await engine.workoff()
        after = await sync_account.enqueue(1)  # the first finished: its key is free again
        assert after and after.id != first.id


async def test_concurrent_unique_enqueues_leave_one_job(make_engine) -> None:
    engine = make_engine()

    @engine.job
    async def report(user: int) -> None: ...

    async with engine:
        other = make_engine()
        async with other:
            handles = [report.options(unique=True), other.options(unique=True)]
            results = await asyncio.gather(*(
                handles[0].enqueue(7) if n % 2 else handles[1].enqueue("report", 7) for n in range(40)
            ))
        assert len({r.id for r in results if r}) == 1
        assert len(await engine.list_jobs()) == 1


async def test_replace_reschedules_a_pending_job_but_never_cancels_a_young_running_one(make_engine) -> None:
    clock = FrozenClock(T0)
    engine = make_engine(clock=clock)
    started = asyncio.Event()
    release = asyncio.Event()

    per_user = UniqueConfig(key="user-42", on_conflict="replace", replace_running_after=3600)

    @engine.job(unique=per_user)
    async def send_report(when: str) -> str:
        started.set()
        await release.wait()
        return when

    async with engine:
        first = await send_report.options(delay=600).enqueue("in ten minutes")
        second = await send_report.options(delay=60).enqueue("in a minute")  # the user re-schedules
        assert first and second and second.id != first.id
        replaced = await engine.get_job(first.id)
        assert replaced and replaced.state is JobState.CANCELED and replaced.errors[-1]["name"] == "Replaced"
        clock.advance(61)
        async with engine.running():
            await asyncio.wait_for(started.wait(), 5)
            third = await send_report.enqueue("now")  # running for seconds: it stays, the new one yields
            assert third and third.id == second.id
            clock.advance(7200)  # now it has been running "two hours": stuck
            fourth = await send_report.enqueue("after the stuck one")
            assert fourth and fourth.id != second.id
            stuck = await engine.get_job(second.id)
            assert stuck and stuck.state is JobState.CANCELED
            release.set()
            done = await engine.wait_for(fourth.id, timeout=10)
        assert done.state is JobState.COMPLETED and done.result == "after the stuck one"
        final = await engine.get_job(second.id)
        assert final and final.state is JobState.CANCELED  # its late result was refused


async def test_unique_period_buckets_and_custom_states(make_engine) -> None:
    clock = FrozenClock(datetime(2030, 1, 1, 0, 0, 10, tzinfo=UTC))
    engine = make_engine(clock=clock)

    @engine.job(unique=UniqueConfig(period=timedelta(hours=1), states=list(JobState)))
    async def hourly_digest() -> None: ...

    async with engine:
        a = await hourly_digest.enqueue()
        await engine.workoff()
        b = await hourly_digest.enqueue()  # completed, but completed counts here: same hour, same job
        clock.advance(3600)
        c = await hourly_digest.enqueue()  # the next hour
        assert a and b and c and a.id == b.id and c.id != a.id


def test_unique_config_validates() -> None:
    with pytest.raises(ConfigurationError, match="on_conflict must be 'drop' or 'replace'"):
        UniqueConfig(on_conflict="merge")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="unique states must be job states"):
        UniqueConfig(states=["pending"])
    with pytest.raises(ConfigurationError, match="unique period must be > 0"):
        UniqueConfig(period=0)
    with pytest.raises(ConfigurationError, match="unique must be True, False or a UniqueConfig"):
        Engine("sqlite:///:memory:").options(unique="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize(("states", "missing"), [
    (["completed"], "add waiting, snoozed, claimed, running"),
    (["waiting", "completed"], "add snoozed, claimed, running"),
    (["waiting"], "add snoozed, claimed, running"),
    (["waiting", "snoozed", "claimed"], "add running"),
    ([], "add waiting, snoozed, claimed, running"),
])
def test_unique_states_must_include_every_pending_state(states: list[str], missing: str) -> None:
    with pytest.raises(ConfigurationError, match="must include every pending state") as caught:
        UniqueConfig(states=states)
    assert missing in str(caught.value) and "completed, failed and canceled are optional" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_unique_states_may_add_finished_states() -> None:
    pending = [JobState.WAITING, JobState.SNOOZED, JobState.CLAIMED, JobState.RUNNING]
    assert UniqueConfig().states == tuple(pending)
    assert UniqueConfig(states=[*pending, "failed"]).states == (*pending, JobState.FAILED)
    assert UniqueConfig(states=list(JobState)).states == tuple(JobState)


async def test_unique_keys_ignore_keyword_order_at_every_depth(make_engine) -> None:
    engine = make_engine()

    @engine.job(unique=True)
    async def sync(account: int, options: dict | None = None, flags: dict | None = None) -> None: ...

    @engine.job(unique=True)
    class Tenant(Job):
        def __init__(self, tenant: str) -> None:
            self.tenant = tenant

        async def run(self, user: int) -> None: ...

    async with engine:
        first = await sync.enqueue(account=1, options={"a": 1, "b": {"x": 1, "y": 2}}, flags={})
        same = await sync.enqueue(flags={}, options={"b": {"y": 2, "x": 1}, "a": 1}, account=1)
        other = await sync.enqueue(account=1, options={"a": 1, "b": {"x": 1, "y": 3}}, flags={})
        assert first and same and other and same.id == first.id and other.id != first.id
        # The digest of a function job's arguments is what it always was (keys already in order).
        plain = await sync.enqueue(7)
        digest = hashlib.sha256(b"[7]\n{}").hexdigest()[:32]
        assert plain and plain.unique_key == f"sync:{digest}"
        # A class job's constructor arguments are part of its identity.
        acme = await Tenant.options(constructor_args=["acme"]).enqueue(1)
        acme_again = await Tenant.options(constructor_args=["acme"]).enqueue(1)
        globex = await Tenant.options(constructor_args=["globex"]).enqueue(1)
        assert acme and acme_again and globex
        assert acme_again.id == acme.id and globex.id != acme.id


async def test_retrying_a_unique_job_whose_key_is_held_names_the_holder(make_engine) -> None:
    engine = make_engine()

    @engine.job(unique=True, max_attempts=1)
    async def charge(order: int) -> None:
        raise RuntimeError("card declined")

    async with engine:
        failed = await charge.enqueue(5)
        await engine.workoff()
        newer = await charge.enqueue(5)  # the key was free again: a new attempt at the order
        assert failed and newer and newer.id != failed.id
        with pytest.raises(UniqueConflictError) as caught:
            await engine.retry_job(failed.id)
        error = caught.value
        assert isinstance(error, JobStateError) and not isinstance(error, BackendError)
        assert (error.job_id, error.holder_id, error.unique_key) == (failed.id, newer.id, failed.unique_key)
        assert str(error) == (f"job {failed.id} cannot be retried: job {newer.id} (waiting) holds its unique key "
                              f"{failed.unique_key!r}; cancel job {newer.id}, or retry once it has finished")
        unchanged = await engine.get_job(failed.id)
        assert unchanged and unchanged.state is JobState.FAILED
        await engine.cancel(newer.id)
        retried = await engine.retry_job(failed.id)
        assert retried and retried.state is JobState.WAITING


async def test_replace_frees_the_key_even_when_canceled_jobs_hold_it(make_engine) -> None:
    engine = make_engine()
    once = UniqueConfig(key="report", on_conflict="replace", states=[
        JobState.WAITING, JobState.SNOOZED, JobState.CLAIMED, JobState.RUNNING, JobState.CANCELED])

    @engine.job(unique=once)
    async def report(when: str) -> str:
        return when

    async with engine:
        first = await report.options(delay=600).enqueue("later")
        second = await report.enqueue("now")  # replaces the first, which is canceled
        assert first and second and second.id != first.id and not second.existing
        replaced = await engine.get_job(first.id)
        assert replaced and replaced.state is JobState.CANCELED
        assert await engine.workoff() == 1
        done = await engine.get_job(second.id)
        assert done and done.state is JobState.COMPLETED and done.result == "now"


async def test_a_replacing_enqueue_is_one_transaction(make_engine, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = make_engine()
    replace_it = UniqueConfig(on_conflict="replace")

    @engine.job
    async def a(n: int) -> None: ...

    async with engine:
        first = await a.options(unique=replace_it).enqueue(7)
        assert first
        # Rows the database refuses (no name: NOT NULL), so each insert below fails after the
        # cancel of the job it replaces has run: the cancel must be undone with it.
        real_insert_for = engine_module.insert_for

        def refused_for(request: Any, now: Any, **kwargs: Any) -> Any:
            made = real_insert_for(request, now, **kwargs)
            return dataclasses.replace(made, name=None) if (request.options.meta or {}).get("refuse") else made

        monkeypatch.setattr(engine_module, "insert_for", refused_for)
        refused = a.options(meta={"refuse": True})
        attempts = [
            [refused.options(unique=replace_it).new(7)],  # one request: the single insert statement
            [a.options(unique=replace_it).new(7), refused.new(8)],  # the batch statement
        ]
        for requests in attempts:
            with pytest.raises(BackendError):
                await engine.enqueue_many(requests)
            kept = await engine.get_job(first.id)
            assert kept and kept.state is JobState.WAITING and kept.canceled_at is None
        monkeypatch.undo()
        assert [j.id for j in await engine.list_jobs()] == [first.id]


# -- retention ----------------------------------------------------------------------------


async def test_retention_per_job_per_queue_and_engine(make_engine) -> None:
    clock = FrozenClock(T0)
    engine = make_engine(clock=clock, completed_retention=3600.0, failed_retention=None)

    @engine.job(max_attempts=1, retention={"completed": 60})
    async def short_lived(fail: bool) -> None:
        if fail:
            raise ValueError

    @engine.job(max_attempts=1)
    async def ordinary(fail: bool) -> None:
        if fail:
            raise ValueError

    async with engine:
        await engine.set_queue("audit", retention={"completed": None, "failed": 120})
        await short_lived.enqueue(False)
        await short_lived.enqueue(True)
        await ordinary.enqueue(False)
        await ordinary.enqueue(True)
        await ordinary.options(queue="audit").enqueue(False)
        await ordinary.options(queue="audit").enqueue(True)
        await engine.workoff()
        clock.advance(61)
        assert await engine.prune() == 1  # short_lived's completed job: its own 60 s
        clock.advance(60)
        assert await engine.prune() == 1  # audit's failed job: 120 s
        clock.advance(3600)
        assert await engine.prune() == 1  # ordinary completed: the engine's hour
        left = sorted((j.queue, j.name, j.state.value) for j in await engine.list_jobs())
        assert left == [("audit", "ordinary", "completed"), ("default", "ordinary", "failed"),
                        ("default", "short_lived", "failed")]
        with pytest.raises(ConfigurationError, match="retention takes completed, failed, canceled"):
            await engine.set_queue("audit", retention={"done": 5})  # type: ignore[typeddict-unknown-key]


# -- recurring jobs -----------------------------------------------------------------------


async def test_declared_schedules_enqueue_each_tick_once_and_link_runs(make_engine) -> None:
    clock = FrozenClock(T0)
    engine = make_engine(clock=clock)

    @engine.cron("*/15 * * * *", args=["nightly"], queue="reports")
    @engine.job
    async def refresh(kind: str) -> str:
        return kind

    async with engine:
        (schedule,) = await engine.list_schedules()
        assert (schedule.name, schedule.job, schedule.args) == ("refresh", "refresh", ["nightly"])
        assert schedule.next_tick == T0 + timedelta(minutes=15)
        assert await engine.enqueue_due_schedules() == []  # T0 itself is the start, not a tick to run
        clock.advance(15 * 60)
        (first,) = await engine.enqueue_due_schedules()
        assert (first.queue, first.args) == ("reports", ["nightly"]) and first.rescheduled_from is None
        assert await engine.enqueue_due_schedules() == []  # the same tick again: nothing
        clock.advance(15 * 60)
        (second,) = await engine.enqueue_due_schedules()
        assert second.rescheduled_from == first.id
        assert await engine.workoff() == 2


def test_cron_below_job_is_refused_with_the_order_to_use() -> None:
    engine = Engine("sqlite:///:memory:")
    with pytest.raises(DuplicateJobError, match=r"put @engine\.cron above @engine\.job"):
        @engine.job(queue="reports")
        @engine.cron("*/15 * * * *")
        async def refresh() -> None: ...

    @engine.cron("*/15 * * * *", name="other")
    @engine.job(queue="reports")
    async def other() -> None: ...


async def test_cron_ticks_keep_the_meta_on_before_add_hooks_return(make_engine) -> None:
    clock = FrozenClock(T0)
    engine = make_engine(clock=clock)
    engine.add_hook("on_before_add", lambda request: {"tenant": "acme"})

    @engine.cron("* * * * *", meta={"kind": "scheduled"})
    @engine.job(on_before_add=lambda request: {"trace": "t-1"})
    async def tick() -> None: ...

    async with engine:
        clock.advance(60)
        (job,) = await engine.enqueue_due_schedules()
        assert job.meta == {"kind": "scheduled", "tenant": "acme", "trace": "t-1"}
        stored = await engine.get_job(job.id)
        assert stored and stored.meta == job.meta


async def test_many_engines_enqueue_a_tick_exactly_once(make_engine) -> None:
    clock = FrozenClock(T0)
    engines = [make_engine(clock=clock) for _ in range(4)]
    for engine in engines:
        engine.cron("* * * * *", name="every-minute")(engine.job(name="tick")(_noop))
    for engine in engines:
        await engine.open()
    for _ in range(3):
        clock.advance(60)
        results = await asyncio.gather(*(e.enqueue_due_schedules() for e in engines))
        assert len({job.id for jobs in results for job in jobs}) == 1
    assert len(await engines[0].list_jobs(name="tick")) == 3


async def _noop() -> None:
    return None


async def test_after_downtime_only_the_last_missed_tick_runs(make_engine, caplog: pytest.LogCaptureFixture) -> None:
    clock = FrozenClock(T0)
    engine = make_engine(clock=clock)
    engine.cron("0 * * * *", name="hourly")(engine.job(name="hourly_job")(_noop))
    async with engine:
        clock.advance(timedelta(hours=5, minutes=30))  # every engine was down for five ticks
        with caplog.at_level(logging.WARNING, logger="aiojobs_engine"):
            (job,) = await engine.enqueue_due_schedules()
        assert "missed 4 tick(s)" in caplog.text
        assert job.unique_key == f"cron:hourly:{(T0 + timedelta(hours=5)).isoformat()}"


async def test_schedules_are_managed_at_run_time(make_engine) -> None:
    clock = FrozenClock(T0)
    engine = make_engine(clock=clock)
    engine.job(name="cleanup")(_noop)
    async with engine:
        added = await engine.add_schedule("cleanup-berlin", "0 3 * * *", "cleanup", timezone="Europe/Berlin",
                                          priority=5)
        assert added.next_tick == datetime(2030, 1, 2, 2, 0, tzinfo=UTC)  # 03:00 in Berlin (UTC+1)
        six = await engine.add_schedule("every-10s", "*/10 * * * * *", "cleanup")
        assert six.next_tick == T0 + timedelta(seconds=10)
        paused = await engine.pause_schedule("every-10s")
        assert paused and paused.paused and paused.next_tick is None
        clock.advance(30)
        assert await engine.enqueue_due_schedules() == []
        resumed = await engine.resume_schedule("every-10s")
        assert resumed and resumed.next_tick == T0 + timedelta(seconds=40)  # missed while paused: not run
        clock.advance(10)
        (job,) = await engine.enqueue_due_schedules()
        assert job.priority == 50
        assert [s.name for s in await engine.list_schedules()] == ["cleanup-berlin", "every-10s"]
        assert await engine.remove_schedule("every-10s") and not await engine.remove_schedule("every-10s")
        with pytest.raises(ConfigurationError, match="invalid cron expression"):
            await engine.add_schedule("bad", "61 * * * *", "cleanup")
        with pytest.raises(ConfigurationError, match="unknown time zone 'Mars/Olympus'"):
            await engine.add_schedule("bad", "* * * * *", "cleanup", timezone="Mars/Olympus")
        with pytest.raises(ConfigurationError, match="5 fields"):
            await engine.add_schedule("bad", "* * *", "cleanup")


async def test_running_engines_share_a_schedule_one_job_per_tick(make_engine) -> None:
    """Real time: three engines at work, a schedule every second, a few seconds of ticks."""
    engines = [make_engine(poll_interval=0.2) for _ in range(3)]
    for engine in engines:
        engine.cron("* * * * * *", name="each-second")(engine.job(name="beat")(_noop))
    for engine in engines:
        await engine.open()
    async with events(*engines, kinds={EventKind.JOB_ENQUEUED}) as seen, engines[0].running(), \
            engines[1].running(), engines[2].running():
        await seen.wait_for(lambda e: e.job.name == "beat", count=4, timeout=10)  # a few seconds of ticks
    jobs = await engines[0].list_jobs(name="beat", limit=1000)
    ticks = [j.unique_key for j in jobs]
    assert len(ticks) == len(set(ticks)) >= 3
    links = {j.rescheduled_from for j in jobs if j.rescheduled_from is not None}
    assert len(links) == len(jobs) - 1  # a chain: each run points at the one before
