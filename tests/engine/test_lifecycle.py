"""Attempts and their outcomes: results, retries, signals, timeouts, ordering, limits, hooks."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from aiojobs_engine import (
    Cancel,
    Complete,
    ConstantBackoff,
    FrozenClock,
    Job,
    JobState,
    QueueConfig,
    Retry,
    Snooze,
    current_job,
)


async def test_async_thread_and_class_jobs_complete_with_results(make_engine) -> None:
    engine = make_engine()

    @engine.job
    async def async_job(x: int) -> dict:
        return {"double": x * 2, "attempt": current_job().attempt}

    @engine.job
    def thread_job(x: int) -> list:
        time.sleep(0.01)
        return [x, current_job().record.name]

    @engine.job
    class ClassJob(Job):
        def __init__(self, prefix: str) -> None:
            self.prefix = prefix

        async def run(self, x: int) -> str:
            return f"{self.prefix}{x}#{self.record.id}"

    async with engine:
        a = await async_job.enqueue(21)
        t = await thread_job.enqueue(5)
        c = await ClassJob.options(constructor_args=["n="]).enqueue(3)
        assert a and t and c
        assert await engine.workoff() == 3
        a2, t2, c2 = [await engine.get_job(r.id) for r in (a, t, c)]
        assert a2 and a2.state is JobState.COMPLETED and a2.result == {"double": 42, "attempt": 1}
        assert a2.attempt == 1 and a2.completed_at and a2.attempted_at and a2.claimed_at and a2.claimed_by
        assert t2 and t2.result == [5, "thread_job"]
        assert c2 and c2.result == f"n=3#{c.id}"


async def test_failures_retry_with_backoff_then_fail_for_good(make_engine) -> None:
    engine = make_engine()
    calls = []

    @engine.job(max_attempts=3, retry=ConstantBackoff(0))
    async def flaky(x: int) -> None:
        calls.append(current_job().attempt)
        raise ValueError(f"bad {x}")

    async with engine:
        record = await flaky.enqueue(7)
        assert record
        assert await engine.workoff() == 3
        failed = await engine.get_job(record.id)
        assert failed and failed.state is JobState.FAILED and failed.attempt == 3 and failed.failed_at
        assert calls == [1, 2, 3]
        assert [e["attempt"] for e in failed.errors] == [1, 2, 3]
        error = failed.errors[0]
        assert error["name"] == "ValueError" and error["message"] == "bad 7"
        assert "raise ValueError" in (error["traceback"] or "")
        assert error["attempted_by"] == failed.claimed_by and error["attempted_at"] is not None


async def test_default_backoff_delays_the_retry(make_engine) -> None:
    engine = make_engine()

    @engine.job
    async def flaky() -> None:
        raise RuntimeError("once")

    async with engine:
        record = await flaky.enqueue()
        assert record
        assert await engine.workoff() == 1  # the retry is about a second away: not waited for
        waiting = await engine.get_job(record.id)
        assert waiting and waiting.state is JobState.WAITING and waiting.attempt == 1
        assert waiting.attempted_at is not None
        delay = (waiting.available_at - waiting.attempted_at).total_seconds()
        assert 0.8 <= delay <= 1.5


async def test_signals_from_function_jobs(make_engine) -> None:
    engine = make_engine()

    @engine.job(max_attempts=5)
    async def signals(kind: str) -> str:
        job = current_job()
        if kind == "complete":
            raise Complete({"early": True})
        if kind == "fail":
            job.fail("no point retrying")
        if kind == "retry" and job.attempt == 1:
            raise Retry(delay=0)
        if kind == "snooze" and not job.record.errors and job.attempt == 1 and job.record.meta.get("n") is None:
            raise Snooze(3600)
        if kind == "cancel":
            raise Cancel("user left")
        if kind == "delete":
            job.delete()
        return kind

    async with engine:
        recs = {k: await signals.enqueue(k) for k in ("complete", "fail", "retry", "snooze", "cancel", "delete")}
        await engine.workoff()
        got = {k: await engine.get_job(r.id) for k, r in recs.items() if r}
        assert got["complete"] and got["complete"].state is JobState.COMPLETED and got["complete"].result == {
            "early": True}
        assert got["fail"] and got["fail"].state is JobState.FAILED and got["fail"].attempt == 1
        assert got["fail"].errors[0]["name"] == "Fail" and got["fail"].errors[0]["message"] == "no point retrying"
        assert got["retry"] and got["retry"].state is JobState.COMPLETED and got["retry"].attempt == 2
        assert got["retry"].errors[0]["name"] == "Retry"
        snoozed = got["snooze"]
        assert snoozed and snoozed.state is JobState.SNOOZED and snoozed.attempt == 0
        assert (snoozed.available_at - snoozed.inserted_at).total_seconds() > 3500
        assert got["cancel"] and got["cancel"].state is JobState.CANCELED and got["cancel"].canceled_at
        assert got["cancel"].errors[-1]["message"] == "user left"
        assert got["delete"] is None


async def test_signals_from_class_jobs(make_engine) -> None:
    engine = make_engine()

    @engine.job(max_attempts=2)
    class Worker(Job):
        async def run(self, kind: str) -> None:
            if kind == "complete":
                self.complete("via self")
            if kind == "retry":
                self.retry(0)
            if kind == "fail":
                self.fail("nope")
            if kind == "cancel":
                self.cancel()
            if kind == "snooze":
                self.snooze(60)
            self.delete()

    async with engine:
        recs = {k: await Worker.enqueue(k) for k in ("complete", "retry", "fail", "cancel", "snooze", "delete")}
        await engine.workoff()
        states = {}
        for kind, record in recs.items():
            assert record
            current = await engine.get_job(record.id)
            states[kind] = None if current is None else current.state
        assert states == {"complete": JobState.COMPLETED, "retry": JobState.FAILED, "fail": JobState.FAILED,
                          "cancel": JobState.CANCELED, "snooze": JobState.SNOOZED, "delete": None}


async def test_timeouts_of_async_jobs(make_engine) -> None:
    engine = make_engine()

    @engine.job(timeout=0.2, max_attempts=1)
    async def sleepy() -> str:
        await asyncio.sleep(30)
        return "late"

    @engine.job(timeout=0.2, max_attempts=1)
    async def stubborn() -> str:
        for _ in range(15):  # swallows the cancellation and carries on for a while
            try:
                await asyncio.sleep(0.2)
            except asyncio.CancelledError:
                pass
        return "ignored"

    @engine.job(timeout=0.2, max_attempts=1)
    async def blocker() -> str:
        time.sleep(0.5)  # blocks the loop: the timeout cannot interrupt it
        return "void"

    async with engine:
        records = [await j.enqueue() for j in (sleepy, stubborn, blocker)]
        started = time.monotonic()
        await engine.workoff()
        assert time.monotonic() - started < 10
        for record in records:
            assert record
            current = await engine.get_job(record.id)
            assert current and current.state is JobState.FAILED and current.result is None, current
            assert current.errors[-1]["name"] == "JobTimeoutError"


async def test_results_that_are_not_json_fail_for_good(make_engine) -> None:
    engine = make_engine()

    @engine.job(max_attempts=5)
    async def returns_object() -> object:
        return object()

    async with engine:
        record = await returns_object.enqueue()
        assert record
        assert await engine.workoff() == 1
        current = await engine.get_job(record.id)
        assert current and current.state is JobState.FAILED and current.attempt == 1
        assert "JSON" in current.errors[0]["message"]


async def test_unknown_job_names_fail_that_job_only(make_engine, caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine()

    @engine.job
    async def known() -> str:
        return "ok"

    async with engine:
        stranger = await engine.enqueue("nobody_declared_me", 1)
        fine = await known.enqueue()
        assert stranger and fine
        with caplog.at_level(logging.ERROR, logger="aiojobs_engine"):
            await engine.workoff()
        failed = await engine.get_job(stranger.id)
        assert failed and failed.state is JobState.FAILED
        assert "nobody_declared_me" in failed.errors[0]["message"] and failed.errors[0]["name"] == "UnknownJobError"
        done = await engine.get_job(fine.id)
        assert done and done.state is JobState.COMPLETED


async def test_workoff_includes_jobs_enqueued_meanwhile_but_not_future_ones(make_engine) -> None:
    engine = make_engine()
    seen = []

    @engine.job
    async def chain(n: int) -> None:
        seen.append(n)
        if n < 3:
            await chain.enqueue(n + 1)

    async with engine:
        await chain.enqueue(0)
        await chain.options(delay=3600).enqueue(100)
        assert await engine.workoff() == 4
        assert seen == [0, 1, 2, 3]
        assert await engine.workoff() == 0


async def test_paused_queues_are_skipped(make_engine) -> None:
    engine = make_engine()

    @engine.job(queue="held")
    async def held() -> None: ...

    async with engine:
        record = await held.enqueue()
        await engine.pause_queue("held")
        assert await engine.workoff() == 0
        await engine.resume_queue("held")
        assert await engine.workoff() == 1
        assert record and (await engine.get_job(record.id)).state is JobState.COMPLETED  # type: ignore[union-attr]


async def test_priority_then_fifo_order_within_a_queue(make_engine) -> None:
    engine = make_engine(queues={"ordered": QueueConfig(concurrency=1)})
    order = []

    @engine.job(queue="ordered")
    async def step(label: str) -> None:
        order.append(label)

    async with engine:
        for label in ("a", "b", "c"):
            await step.enqueue(label)
        await step.options(priority=1).enqueue("urgent")
        await step.options(priority=99).enqueue("last")
        await engine.workoff()
        assert order == ["urgent", "a", "b", "c", "last"]


async def test_queue_priority_order(make_engine) -> None:
    engine = make_engine(queues={"low": QueueConfig(concurrency=1, priority=90),
                                 "high": QueueConfig(concurrency=1, priority=1)})
    order = []

    @engine.job
    async def step(label: str) -> None:
        order.append(label)

    async with engine:
        await step.options(queue="low").enqueue("low")
        await step.options(queue="high").enqueue("high")
        await engine.workoff()
        assert order == ["high", "low"]


async def test_concurrency_limit_per_queue(make_engine) -> None:
    engine = make_engine(queues={"narrow": QueueConfig(concurrency=3), "wide": QueueConfig(concurrency=10)})
    active = {"narrow": 0, "wide": 0}
    peak = {"narrow": 0, "wide": 0}

    @engine.job
    async def work(queue: str) -> None:
        active[queue] += 1
        peak[queue] = max(peak[queue], active[queue])
        await asyncio.sleep(0.05)
        active[queue] -= 1

    async with engine:
        await engine.enqueue_many([work.options(queue=q).new(q) for q in ("narrow", "wide") for _ in range(20)])
        assert await engine.workoff() == 40
        assert peak == {"narrow": 3, "wide": 10}


async def test_an_engine_with_queues_works_only_those(make_engine) -> None:
    engine = make_engine(queues=["mine"])

    @engine.job
    async def job() -> None: ...

    async with engine:
        mine = await job.options(queue="mine").enqueue()
        theirs = await job.options(queue="theirs").enqueue()
        assert await engine.workoff() == 1
        assert mine and (await engine.get_job(mine.id)).state is JobState.COMPLETED  # type: ignore[union-attr]
        assert theirs and (await engine.get_job(theirs.id)).state is JobState.WAITING  # type: ignore[union-attr]


async def test_hooks(make_engine, caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine()
    events: list[tuple[str, object]] = []

    async def veto_secret(request) -> bool:
        return request.args != ("secret",)

    def broken_hook(record) -> None:
        raise RuntimeError("hook bug")

    @engine.hook("on_success")
    def engine_success(record, result) -> None:
        events.append(("engine_success", result))

    deferred_once: set[int] = set()

    def gate(record) -> float | bool:
        if record.args == ["later"] and record.id not in deferred_once:
            deferred_once.add(record.id)
            return 0.0
        return True

    @engine.job(max_attempts=1, on_before_add=veto_secret, okay_to_run=gate, before_perform=broken_hook,
                on_failure=lambda r, e: events.append(("failure", type(e).__name__)),
                on_max_attempts_exhausted=lambda r, e: events.append(("exhausted", r.id)),
                after_perform=lambda r, kind: events.append(("after", kind)))
    async def hooked(x: str) -> str:
        if x == "boom":
            raise KeyError(x)
        return x

    async with engine:
        assert await hooked.enqueue("secret") is None
        ok = await hooked.enqueue("ok")
        later = await hooked.enqueue("later")
        boom = await hooked.enqueue("boom")
        assert ok and later and boom
        with caplog.at_level(logging.ERROR, logger="aiojobs_engine"):
            await engine.workoff()
        assert "hook bug" in caplog.text
        assert ("engine_success", "ok") in events and ("engine_success", "later") in events
        assert ("failure", "KeyError") in events and ("exhausted", boom.id) in events
        assert events.count(("after", "completed")) == 2 and ("after", "failure") in events
        deferred = await engine.get_job(later.id)
        assert deferred and deferred.state is JobState.COMPLETED and deferred.attempt == 1
        assert len(await engine.list_jobs()) == 3


async def test_delete_retry_and_clear(make_engine) -> None:
    engine = make_engine()

    @engine.job(max_attempts=1)
    async def fails() -> None:
        raise ValueError("x")

    async with engine:
        record = await fails.enqueue()
        assert record
        await engine.workoff()
        retried = await engine.retry_job(record.id)
        assert retried and retried.state is JobState.WAITING and retried.max_attempts == 2
        await engine.workoff()
        failed = await engine.get_job(record.id)
        assert failed and failed.state is JobState.FAILED and failed.attempt == 2 and len(failed.errors) == 2
        assert await engine.delete_job(record.id) and await engine.get_job(record.id) is None
        await fails.enqueue()
        await fails.options(queue="other").enqueue()
        assert await engine.clear(queues=["other"]) == 1
        assert await engine.clear() == 1
        assert await engine.list_jobs() == []


async def test_prune_respects_retention(make_engine) -> None:
    clock = FrozenClock()
    engine = make_engine(completed_retention=0.0, failed_retention=None, clock=clock)

    @engine.job(max_attempts=1)
    async def job(ok: bool) -> None:
        if not ok:
            raise ValueError

    async with engine:
        await job.enqueue(True)
        await job.enqueue(False)
        await engine.workoff()
        clock.advance(0.01)  # past the completed job's retention (none)
        assert await engine.prune() == 1
        assert [r.state for r in await engine.list_jobs()] == [JobState.FAILED]


async def test_nul_characters_are_refused_in_data_and_escaped_in_errors(make_engine) -> None:
    """PostgreSQL's jsonb cannot hold NUL: both backends refuse it in data, the same way."""
    from aiojobs_engine import SerializationError

    engine = make_engine()

    @engine.job(max_attempts=1)
    async def job(kind: str) -> str:
        if kind == "raise":
            raise ValueError("bad\x00byte")
        return "nul\x00result" if kind == "return" else "fine"

    async with engine:
        with pytest.raises(SerializationError, match="NUL"):
            await job.enqueue("a\x00b")
        raised = await job.enqueue("raise")
        returned = await job.enqueue("return")
        fine = await job.enqueue("ok")
        assert raised and returned and fine
        assert await engine.workoff() == 3
        r = await engine.get_job(raised.id)
        assert r and r.state is JobState.FAILED and r.errors[0]["message"] == "bad\\x00byte"
        b = await engine.get_job(returned.id)
        assert b and b.state is JobState.FAILED and "NUL" in b.errors[0]["message"]
        f = await engine.get_job(fine.id)
        assert f and f.state is JobState.COMPLETED  # the same batch of outcomes went through
