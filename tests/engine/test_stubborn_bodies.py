"""Bodies that do not stop when told to: no second run of their job anywhere while they run
on, and a log that names them (issue 19's defects, found from outside)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from aiojobs_engine import Engine, JobState, QueueConfig
from tests._waiting import LogWatch


async def test_a_body_that_swallows_its_timeout_blocks_its_retry_on_every_engine(make_engine) -> None:
    """Two engines share a database. The job times out after 0.2 s but swallows the
    cancellation and runs 1.5 s more. Its retry (backoff 0) must not start, on either engine,
    before that body has ended; the attempt is recorded as timed out once it does."""
    engines = [make_engine(queues={"q": QueueConfig(concurrency=2)}) for _ in range(2)]
    spans: list[tuple[int, float, float]] = []  # (attempt, began, ended) of every body, both engines
    second = asyncio.Event()

    for engine in engines:
        @engine.job(name="stubborn", queue="q", timeout=0.2, max_attempts=2, retry=lambda attempt: 0.0)
        async def stubborn() -> str:
            from aiojobs_engine import current_job

            attempt = current_job().attempt
            began = time.monotonic()
            if attempt == 1:
                deadline = began + 1.5
                while time.monotonic() < deadline:  # ignores every cancellation until then
                    try:
                        await asyncio.sleep(deadline - time.monotonic())
                    except asyncio.CancelledError:
                        pass
            spans.append((attempt, began, time.monotonic()))
            if attempt == 2:
                second.set()
            return f"attempt {attempt}"

    first, other = engines
    async with first.running(), other.running():
        record = await first.enqueue("stubborn")
        assert record
        await asyncio.wait_for(second.wait(), 15)
        done = await first.wait_for(record.id, timeout=10)
    assert done.state is JobState.COMPLETED and done.attempt == 2
    (one, _, ended_1), (two, began_2, _) = sorted(spans)
    assert (one, two) == (1, 2)
    assert began_2 >= ended_1, "attempt 2 started while attempt 1's body still ran"
    error = done.errors[0]
    assert error["name"] == "JobTimeoutError" and error["attempt"] == 1
    assert "timed out after 0.2s" in error["message"] and "before it stopped" in error["message"]


async def test_a_stubborn_body_is_reported_once_and_keeps_its_job_running(make_engine) -> None:
    engine = make_engine()
    running = asyncio.Event()
    release = asyncio.Event()

    @engine.job(timeout=0.1, max_attempts=1)
    async def stubborn() -> None:
        running.set()
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                pass

    async with LogWatch() as logs, engine.running():
        record = await stubborn.enqueue()
        assert record
        await asyncio.wait_for(running.wait(), 5)
        # STOP_GRACE past its deadline, at the next claim watch:
        ignored = await logs.wait_for("job.timeout_ignored")
        held = await engine.get_job(record.id)
        assert held and held.state is JobState.RUNNING  # no retry can start anywhere meanwhile
        release.set()
        done = await engine.wait_for(record.id, timeout=5)
    assert done.state is JobState.FAILED and done.errors[0]["name"] == "JobTimeoutError"
    assert len(logs.of("job.timeout_ignored")) == 1 and ignored.job_id == record.id  # type: ignore[attr-defined]
    assert "stays running here" in ignored.getMessage()


async def test_a_blocked_loop_is_reported_with_its_job_while_the_block_lasts(sqlite_url: str) -> None:
    """The heartbeat thread names the job whose run blocks the loop, says it again every ten
    loop_lag_warning while the block lasts, and once when the loop turns again."""
    engine = Engine(sqlite_url, poll_interval=0.05, heartbeat_interval=0.05, stale_after=30, loop_lag_warning=0.1)

    @engine.job(name="sleeper")
    async def sleeper() -> None:
        time.sleep(1.6)  # blocks the event loop, as a job calling blocking code from async would

    async with LogWatch() as logs, engine:
        record = await sleeper.enqueue()
        assert record
        async with engine.running():
            await engine.wait_for(record.id, timeout=10)
            turns = await logs.wait_for("loop.blocked", lambda r: r.levelno == logging.INFO)
    warnings = [r for r in logs.of("loop.blocked") if r.levelno == logging.WARNING]
    assert len(warnings) >= 2, [r.getMessage() for r in warnings]  # at ~0.1 s, and again ~1 s later
    for warning in warnings:
        assert warning.job_id == record.id and warning.job_name == "sleeper"  # type: ignore[attr-defined]
        assert f"by job {record.id} (sleeper)" in warning.getMessage()
        assert "time.sleep(1.6)" in warning.getMessage()  # where it is blocked
    assert "turns again" in turns.getMessage()


async def test_a_thread_job_past_its_timeout_keeps_its_slot_and_its_claim(make_engine) -> None:
    """Nothing can stop a thread: its job stays running (and its slot taken) until it returns,
    then fails as timed out, its result discarded."""
    engine = make_engine(queues={"t": QueueConfig(concurrency=1)})
    go = threading.Event()
    began: list[str] = []

    @engine.job(queue="t", timeout=0.1, max_attempts=1)
    def blocking(label: str) -> str:
        began.append(label)
        if label == "first":
            go.wait(10)
        return label

    async with LogWatch() as logs, engine.running():
        first = await blocking.enqueue("first")
        after = await blocking.enqueue("after")
        assert first and after
        await logs.wait_for("job.timeout_ignored")  # told to stop, it could not be: a thread
        current = await engine.get_job(first.id)
        assert current and current.state is JobState.RUNNING
        waiting = await engine.get_job(after.id)
        assert waiting and waiting.state is JobState.WAITING  # the one slot is still taken
        go.set()
        done = await engine.wait_for(first.id, timeout=10)
        await engine.wait_for(after.id, timeout=10)
    assert done.state is JobState.FAILED and done.result is None
    assert done.errors[0]["name"] == "JobTimeoutError" and "before it stopped" in done.errors[0]["message"]
    assert began == ["first", "after"]
    assert "a thread cannot be stopped" in logs.of("job.timeout_ignored")[0].getMessage()


@pytest.mark.parametrize("how", ["cancel", "timeout"])
async def test_a_cooperative_body_stops_at_once(make_engine, how: str) -> None:
    engine = make_engine()
    running = asyncio.Event()

    @engine.job(timeout=0.2 if how == "timeout" else None, max_attempts=1)
    async def sleepy() -> None:
        running.set()
        await asyncio.sleep(3600)

    async with engine.running():
        record = await sleepy.enqueue()
        assert record
        await asyncio.wait_for(running.wait(), 5)
        t0 = time.monotonic()
        if how == "cancel":
            await engine.cancel(record.id)
        done = await engine.wait_for(record.id, timeout=5)
        assert time.monotonic() - t0 < 2.0
    expected = JobState.CANCELED if how == "cancel" else JobState.FAILED
    assert done.state is expected and done.attempt == 1
