"""Events and instrumentation points: what integrations (telemetry, metrics) build on."""

from __future__ import annotations

import contextvars

import pytest

from aiojobs_engine import ConfigurationError, Engine, EventKind, JobEvent, current_job
from aiojobs_engine._events import EventBus

trace_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)


async def test_events_follow_each_job_through_its_life(make_engine) -> None:
    engine = make_engine()
    events: list[JobEvent] = []
    unsubscribe = engine.subscribe(events.append)

    @engine.job(max_attempts=2, retry=lambda attempt: 0.0)
    async def flaky(fail_first: bool) -> str:
        if fail_first and current_job().attempt == 1:
            raise ValueError("first attempt")
        return "ok"

    async with engine:
        good = await flaky.enqueue(False)
        bad = await flaky.enqueue(True)
        await engine.workoff()
        assert good and bad
        by_job = {job_id: [e.kind for e in events if e.job and e.job.id == job_id] for job_id in (good.id, bad.id)}
        assert by_job[good.id] == [EventKind.JOB_ENQUEUED, EventKind.JOB_STARTED, EventKind.JOB_COMPLETED]
        assert by_job[bad.id] == [EventKind.JOB_ENQUEUED, EventKind.JOB_STARTED, EventKind.JOB_RETRYING,
                                  EventKind.JOB_STARTED, EventKind.JOB_COMPLETED]
        retrying = next(e for e in events if e.kind == EventKind.JOB_RETRYING)
        assert isinstance(retrying.error, ValueError) and retrying.duration is not None
        started = next(e for e in events if e.kind == EventKind.JOB_STARTED)
        assert started.queue_wait is not None and started.queue_wait >= 0 and started.engine_id
        completed = next(e for e in events if e.kind == EventKind.JOB_COMPLETED)
        assert completed.result == "ok"
        assert [e.kind for e in events if e.job is None] == [EventKind.ENGINE_STARTED, EventKind.ENGINE_STOPPED]
        unsubscribe()
        count = len(events)
        await flaky.enqueue(False)
        assert len(events) == count


async def test_a_failing_listener_does_not_disturb_the_job(make_engine) -> None:
    engine = make_engine()
    engine.subscribe(lambda event: 1 / 0)

    @engine.job
    async def job() -> int:
        return 1

    async with engine:
        record = await job.enqueue()
        await engine.workoff()
        assert record
        done = await engine.get_job(record.id)
        assert done and done.result == 1


async def test_context_hooks_and_meta_from_on_before_add(make_engine) -> None:
    engine = make_engine()
    engine.add_hook("on_before_add", lambda request: {"trace": "abc"})  # say, a traceparent
    engine.add_context_hook(lambda record: trace_id.set(record.meta.get("trace")))
    seen = []

    @engine.job(meta={"team": "growth"})
    async def job() -> None:
        seen.append(trace_id.get())

    @engine.job
    def blocking() -> None:
        seen.append(trace_id.get())

    async with engine:
        record = await job.enqueue()
        await blocking.enqueue()
        assert record and record.meta == {"team": "growth", "trace": "abc"}
        await engine.workoff()
    assert seen == ["abc", "abc"] and trace_id.get() is None


async def test_a_unique_enqueue_that_finds_its_job_emits_nothing(make_engine) -> None:
    engine = make_engine()
    events: list[JobEvent] = []
    engine.subscribe(events.append)

    @engine.job(unique=True)
    async def report(user: int) -> None: ...

    async with engine:
        first = await report.enqueue(7)
        again = await report.enqueue(7)
        both = await engine.enqueue_many([report.new(7), report.new(8)])
        assert first and again and again.id == first.id and both[0].id == first.id
        enqueued = [e.job.id for e in events if e.kind == EventKind.JOB_ENQUEUED and e.job]
        assert enqueued == [first.id, both[1].id]


async def test_a_listener_gets_only_the_kinds_it_asked_for(make_engine) -> None:
    engine = make_engine()
    everything: list[str] = []
    outcomes: list[str] = []
    engine.subscribe(lambda event: everything.append(event.kind))
    stop_outcomes = engine.subscribe(lambda event: outcomes.append(event.kind),
                                     kinds={EventKind.JOB_COMPLETED, EventKind.JOB_FAILED})

    @engine.job(max_attempts=1)
    async def job(fail: bool) -> None:
        if fail:
            raise ValueError("no")

    async with engine:
        await job.enqueue(False)
        await job.enqueue(True)
        await engine.workoff()
        assert outcomes == [EventKind.JOB_COMPLETED, EventKind.JOB_FAILED]
        assert everything.count(EventKind.JOB_STARTED) == 2 and EventKind.JOB_ENQUEUED in everything
        stop_outcomes()
        await job.enqueue(False)
        await engine.workoff()
    assert outcomes == [EventKind.JOB_COMPLETED, EventKind.JOB_FAILED]
    assert everything.count(EventKind.JOB_COMPLETED) == 2


def test_an_event_no_listener_wants_is_not_built() -> None:
    bus = EventBus()
    assert not bus.wants(EventKind.JOB_STARTED)
    unsubscribe = bus.subscribe(print, [EventKind.JOB_COMPLETED])
    assert bus.wants(EventKind.JOB_COMPLETED) and not bus.wants(EventKind.JOB_STARTED)
    unsubscribe()
    assert not bus.wants(EventKind.JOB_COMPLETED)


def test_unsubscribing_removes_that_subscription_only() -> None:
    bus = EventBus()
    seen: list[str] = []
    bus.subscribe(seen.append, [EventKind.JOB_STARTED])
    stop_completed = bus.subscribe(seen.append, [EventKind.JOB_COMPLETED])
    stop_completed()
    assert bus.wants(EventKind.JOB_STARTED) and not bus.wants(EventKind.JOB_COMPLETED)


@pytest.mark.parametrize(("kinds", "message"), [
    (EventKind.JOB_COMPLETED, "not one string"),
    (b"job.completed", "not one string"),
    ({"job.finished"}, "unknown event kind.*'job.finished'"),
    (set(), "kinds is empty"),
    (42, "collection of event kinds"),
])
def test_bad_kinds_are_refused(kinds: object, message: str) -> None:
    engine = Engine("sqlite:///:memory:")
    with pytest.raises(ConfigurationError, match=message):
        engine.subscribe(print, kinds=kinds)  # type: ignore[arg-type]
