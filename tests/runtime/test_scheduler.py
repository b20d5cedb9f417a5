"""The cron scheduler: each tick of a schedule is enqueued once (its unique key makes a
second insert find the first), the producer is told the queue, and after a gap only the
newest missed tick runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

import pytest

from aiojobs_engine import FrozenClock
from aiojobs_engine._definitions import Registry
from aiojobs_engine._errors import BackendUnavailableError
from aiojobs_engine._events import EventKind, JobEvent
from aiojobs_engine._records import JobRecord, JobState
from aiojobs_engine._runtime._scheduler import Scheduler
from aiojobs_engine._runtime._services import Services

from ._fake import FakeBackend
from ._support import START, Logs, declare


class _Told:
    def __init__(self) -> None:
        self.calls: list[Sequence[str]] = []

    def __call__(self, queues: Sequence[str]) -> None:
        self.calls.append(list(queues))


@pytest.fixture
def told(fake: FakeBackend, registry: Registry) -> _Told:
    async def report() -> None:
        return None

    declare(registry, report)
    fake.add_schedule("every-minute", "* * * * *", "report", last_tick=START, options={"queue": "reports"})
    return _Told()


def _jobs(fake: FakeBackend) -> list[JobRecord]:
    return sorted(fake.jobs.values(), key=lambda j: j.id)


async def test_a_due_tick_is_enqueued_once_with_its_unique_key(
        services: Services, fake: FakeBackend, clock: FrozenClock, told: _Told) -> None:
    enqueued: list[JobEvent] = []
    services.events.subscribe(enqueued.append, kinds=[EventKind.JOB_ENQUEUED])
    scheduler = Scheduler(services, told)
    clock.advance(61)
    await scheduler.step()
    (job,) = _jobs(fake)
    tick = START + timedelta(minutes=1)
    assert (job.name, job.queue, job.state) == ("report", "reports", JobState.WAITING)
    assert job.unique_key == f"cron:every-minute:{tick.isoformat()}"
    (insert,) = fake.calls_to("job_insert_many")[0].args["inserts"]
    assert set(insert.unique_states) == set(JobState)  # held in every state: a tick runs once, ever
    assert fake.schedules["every-minute"].last_tick == tick
    assert fake.schedules["every-minute"].last_job_id == job.id
    assert told.calls == [["reports"]] and len(enqueued) == 1
    await scheduler.step()  # the same moment again: nothing more
    assert len(fake.jobs) == 1 and len(fake.calls_to("job_insert_many")) == 1 and told.calls == [["reports"]]


async def test_a_tick_whose_progress_was_not_stored_is_not_enqueued_twice(
        services: Services, fake: FakeBackend, clock: FrozenClock, told: _Told) -> None:
    clock.advance(61)
    fake.fail("cron_advance", BackendUnavailableError("connection lost"))  # inserted, then the engine lost it
    with pytest.raises(BackendUnavailableError):
        await Scheduler(services, told).step()
    await Scheduler(services, told).step()  # this engine again, or another one: same tick
    assert len(fake.calls_to("job_insert_many")) == 2
    (job,) = _jobs(fake)
    assert fake.schedules["every-minute"].last_job_id == job.id and told.calls == [["reports"]]


async def test_a_tick_whose_progress_was_not_stored_is_still_announced_once(
        services: Services, fake: FakeBackend, clock: FrozenClock, told: _Told) -> None:
    enqueued: list[JobEvent] = []
    services.events.subscribe(enqueued.append, kinds=[EventKind.JOB_ENQUEUED])
    clock.advance(61)
    fake.fail("cron_advance", BackendUnavailableError("connection lost"))
    with pytest.raises(BackendUnavailableError):
        await Scheduler(services, told).step()
    await Scheduler(services, told).step()
    assert len(enqueued) == 1


async def test_a_schedule_that_is_not_due_does_nothing(
        services: Services, fake: FakeBackend, clock: FrozenClock, told: _Told) -> None:
    clock.advance(59)
    await Scheduler(services, told).step()
    assert fake.calls_to("cron_list") and fake.calls_to("job_insert_many") == [] and fake.calls_to("cron_advance") == []
    assert fake.jobs == {} and told.calls == []


async def test_a_paused_schedule_does_nothing(
        services: Services, fake: FakeBackend, clock: FrozenClock, told: _Told) -> None:
    fake.schedules["every-minute"] = replace(fake.schedules["every-minute"], paused=True)
    clock.advance(3600)
    await Scheduler(services, told).step()
    assert fake.jobs == {} and told.calls == []


async def test_after_missed_ticks_only_the_newest_runs(
        services: Services, fake: FakeBackend, clock: FrozenClock, told: _Told, logs: Logs) -> None:
    scheduler = Scheduler(services, told)
    clock.advance(timedelta(minutes=10, seconds=5))  # no engine ran for ten minutes
    await scheduler.step()
    (first,) = _jobs(fake)
    assert first.unique_key == f"cron:every-minute:{(START + timedelta(minutes=10)).isoformat()}"
    (line,) = logs.of("cron.skipped")
    assert line.skipped == 9  # type: ignore[attr-defined]
    clock.advance(60)
    await scheduler.step()
    first, second = _jobs(fake)
    assert second.unique_key == f"cron:every-minute:{(START + timedelta(minutes=11)).isoformat()}"
    assert second.rescheduled_from == first.id  # each run links to the one before it
    assert len(logs.of("cron.skipped")) == 1 and told.calls == [["reports"], ["reports"]]
