"""Failure modes found in review, each pinned: none may strand, lose or double-run a job."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from typing import Any

import pytest

from aiojobs_engine import Engine, JobState, Snooze
from aiojobs_engine._backends._protocol import EngineRegistration, JobClaim, JobStart, QueueDemand
from aiojobs_engine._errors import BackendUnavailableError
from tests._waiting import backend_calls, eventually
from tests.conftest import FAST


async def silent_for(engine: Engine, engine_id: str | None, seconds: float) -> bool:
    """Is that engine's (None: the only one's) stored heartbeat older than ``seconds``? An
    engine no longer registered counts as silent: a reaper deletes only stale engines."""
    registered = [e for e in await engine.list_engines() if engine_id in (None, e.id)]
    assert len(registered) <= 1, registered
    return not registered or (datetime.now(UTC) - registered[0].heartbeat_at).total_seconds() > seconds


async def test_a_memory_engine_never_reaps_its_own_running_jobs() -> None:
    engine = Engine("sqlite:///:memory:", **FAST)
    starts = []

    @engine.job
    async def long() -> str:
        starts.append(1)
        await asyncio.sleep(1.5)  # longer than stale_after (0.6 s)
        return "once"

    async with engine.running():
        record = await long.enqueue()
        assert record
        done = await engine.wait_for(record.id, timeout=10)
    assert done.state is JobState.COMPLETED and done.attempt == 1 and starts == [1]


async def test_an_engine_whose_heartbeat_stopped_claims_nothing(make_engine) -> None:
    engine = make_engine()
    starts = []

    @engine.job
    async def job() -> None:
        starts.append(1)

    async with engine.running():
        runtime = engine._runtime
        if runtime is None or runtime.maintenance._heartbeat is None:
            pytest.skip("this backend needs no heartbeat")
        runtime.maintenance._heartbeat._stop.set()  # as if its connection could not be opened any more
        await eventually(lambda: silent_for(engine, None, FAST["stale_after"]), message="heartbeat gone stale")
        async with backend_calls(engine, "job_claim") as claims:
            record = await job.enqueue()
            await claims.more(5)  # the wake-up, then polls: each claim is refused
        assert record and starts == []
        current = await engine.get_job(record.id)
        assert current and current.state is JobState.WAITING


async def test_outcomes_the_database_cannot_store_do_not_block_the_others(make_engine) -> None:
    engine = make_engine()

    @engine.job(max_attempts=2, retry=lambda attempt: 10**400)  # overflows any clock
    async def overflow() -> None:
        raise ValueError("boom")

    @engine.job(max_attempts=1)
    async def surrogate() -> None:
        raise ValueError("bad file name: \udcff")

    @engine.job
    async def far_snooze() -> None:
        raise Snooze(1e300)

    @engine.job
    async def fine() -> str:
        return "ok"

    async with engine:
        records = [await j.enqueue() for j in (overflow, surrogate, far_snooze, fine)]
        await engine.workoff()
        o, s, f, ok = [await engine.get_job(r.id) for r in records if r]
    assert o and o.state is JobState.WAITING and o.attempt == 1  # the default backoff stood in
    assert s and s.state is JobState.FAILED and "\\udcff" in s.errors[0]["message"]
    # A snooze past any storable time is refused where it is raised, as a failed attempt.
    assert f and f.state is JobState.WAITING and "at most" in f.errors[0]["message"]
    assert ok and ok.state is JobState.COMPLETED


async def test_a_backoff_policy_that_raises_still_ends_the_attempt(make_engine) -> None:
    engine = make_engine()

    def broken(attempt: int) -> float:
        raise ZeroDivisionError("policy bug")

    @engine.job(max_attempts=3, retry=broken)
    async def job() -> None:
        raise RuntimeError("fails")

    async with engine:
        record = await job.enqueue()
        await engine.workoff()
        assert record
        current = await engine.get_job(record.id)
    assert current and current.state is JobState.WAITING and current.attempt == 1


async def test_a_job_whose_body_ignored_its_timeout_is_not_run_twice_at_once(make_engine) -> None:
    engine = make_engine()
    active = 0
    overlap = False

    @engine.job(timeout=0.2, max_attempts=2, retry=lambda attempt: 0.0)
    async def stubborn() -> None:
        nonlocal active, overlap
        active += 1
        overlap = overlap or active > 1
        try:
            for _ in range(8):  # ignores the cancellation for 0.8 s
                try:
                    await asyncio.sleep(0.1)
                except asyncio.CancelledError:
                    pass
        finally:
            active -= 1

    async with engine:
        record = await stubborn.enqueue()
        assert record
        await engine.workoff()
        await eventually(lambda: active == 0, message="the stubborn body to end")
        current = await engine.get_job(record.id)
    assert not overlap
    assert current and current.state is JobState.FAILED and current.attempt == 2
    assert [e["name"] for e in current.errors] == ["JobTimeoutError", "JobTimeoutError"]


async def test_a_malformed_stored_row_fails_that_job_only(sqlite_url: str) -> None:
    engine = Engine(sqlite_url, **FAST)

    @engine.job
    async def hello(x: int) -> int:
        return x

    async with engine:
        bad = await hello.enqueue(1)
        good = [await hello.enqueue(i) for i in range(3)]
    assert bad
    with closing(sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))) as raw, raw:
        raw.execute("UPDATE aiojobs_jobs SET kwargs = '[\"not an object\"]' WHERE id = ?", (bad.id,))
    async with engine:
        await engine.workoff()
        broken = await engine.get_job(bad.id)
        assert broken and broken.state is JobState.FAILED and "could not be read" in broken.errors[0]["message"]
        for record in good:
            assert record and (await engine.get_job(record.id)).state is JobState.COMPLETED  # type: ignore[union-attr]


async def test_cancelling_run_twice_still_hands_the_job_back(make_engine) -> None:
    engine = make_engine(shutdown_grace=30)
    started = asyncio.Event()

    @engine.job
    async def endless() -> None:
        started.set()
        await asyncio.sleep(3600)

    async with engine:
        record = await endless.enqueue()
        runner = asyncio.create_task(engine.run())
        await asyncio.wait_for(started.wait(), 5)
        runner.cancel()
        await asyncio.sleep(0)
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        assert record
        back = await engine.get_job(record.id)
        assert back and back.state is JobState.WAITING and back.attempt == 0
        assert await engine.list_engines() == []


async def test_opening_the_engine_inside_a_job_does_not_close_it(make_engine) -> None:
    engine = make_engine()

    @engine.job
    async def first() -> None:
        async with engine:  # what a job shared with a web app might do
            await second.enqueue()

    @engine.job
    async def second() -> str:
        return "ran"

    async with engine.running():
        record = await first.enqueue()
        assert record
        await engine.wait_for(record.id, timeout=5)
        await eventually(lambda: _completed(engine, "second"))


async def _completed(engine: Engine, name: str) -> bool:
    return any(j.state is JobState.COMPLETED for j in await engine.list_jobs(name=name))


async def test_workoff_also_runs_the_jobs_of_dead_engines(make_engine) -> None:
    engine = make_engine()

    @engine.job
    async def job() -> str:
        return "rescued"

    async with engine:
        record = await job.enqueue()
        assert record
        ghost = EngineRegistration(id="ghost", incarnation="x", host="elsewhere", pid=1, queues=None)
        await engine.backend.engine_register(ghost, stale_after=0.5, takeover_incarnation=None)
        (claimed,) = await engine.backend.job_claim(JobClaim(engine_id="ghost", demands=[QueueDemand("default", 1)]))
        await engine.backend.job_start_many([JobStart(claimed.id, claimed.claim_token or "")])
        await eventually(lambda: silent_for(engine, "ghost", FAST["stale_after"]), message="the ghost gone stale")
        assert await engine.workoff() == 1
        done = await engine.get_job(record.id)
    assert done and done.state is JobState.COMPLETED and done.attempt == 2


async def test_a_claim_whose_reply_was_lost_is_handed_back_and_runs(make_engine) -> None:
    engine = make_engine()

    @engine.job
    async def hello() -> str:
        return "hi"

    await engine.open()
    try:
        backend = engine.backend
        real_claim = backend.job_claim
        lost = False

        async def claim_then_lose_the_reply(claim: JobClaim) -> Any:
            nonlocal lost
            result = await real_claim(claim)
            if result and not lost:
                lost = True  # committed, but the connection died before the reply came back
                raise BackendUnavailableError("connection lost after commit (simulated)")
            return result

        backend.job_claim = claim_then_lose_the_reply  # type: ignore[method-assign]
        record = await hello.enqueue()
        assert record
        async with engine.running():
            done = await engine.wait_for(record.id, timeout=10)
        assert lost and done.state is JobState.COMPLETED and done.attempt == 1
    finally:
        await engine.close()


@pytest.mark.slow
async def test_a_slow_import_does_not_count_against_a_cpu_jobs_timeout(sqlite_url: str) -> None:
    from tests.apps import slow_import_app

    slow_import_app.engine.configure(url=sqlite_url, **FAST)
    async with slow_import_app.engine as engine:
        record = await slow_import_app.quick.enqueue()
        await engine.workoff()
        assert record
        done = await engine.get_job(record.id)
    assert done and done.state is JobState.COMPLETED and done.result == "fast, once imported"


@pytest.mark.parametrize("hooked", [False, True], ids=["light-road", "supervised"])
async def test_an_outcome_the_database_refuses_becomes_a_failed_attempt(make_engine, monkeypatch, hooked) -> None:
    """Fault injection: the database refuses one job's outcome (as for data it cannot hold);
    that job records a failed attempt instead and the others of its batch are stored."""
    from aiojobs_engine._errors import BackendError

    engine = make_engine()
    after: list[int] = []

    @engine.job(max_attempts=3, retry=lambda attempt: 30.0,
                **({"after_perform": lambda record, outcome: after.append(record.id)} if hooked else {}))
    async def job(n: int) -> int:
        return n

    async with engine:
        records = [await job.enqueue(n) for n in range(5)]
        poisoned = records[2].id
        backend = engine._backend
        original = backend.job_write_many

        async def refusing(starts, outcomes, **kwargs):
            if any(o.id == poisoned and o.state is JobState.COMPLETED for o in outcomes):
                raise BackendError("value out of range for this column")
            return await original(starts, outcomes, **kwargs)

        monkeypatch.setattr(backend, "job_write_many", refusing)
        await engine.workoff()
        states = {r.id: await engine.get_job(r.id) for r in records}
    bad = states.pop(poisoned)
    assert bad.state is JobState.WAITING and bad.attempt == 1
    assert "could not be stored" in bad.errors[0]["message"]
    assert all(r.state is JobState.COMPLETED for r in states.values())


async def test_a_failure_inside_the_engine_still_ends_the_claim(make_engine, monkeypatch) -> None:
    """Fault injection: building one outcome raises (an engine bug); the attempt is recorded
    as failed by the fallback, and the engine goes on."""
    from aiojobs_engine._runtime import _run

    engine = make_engine()

    @engine.job(max_attempts=2, retry=lambda attempt: 30.0)
    async def job(n: int) -> int:
        return n

    real = _run.outcome_for
    broken_once: list[int] = []

    def flaky_outcome_for(record, decision, engine_id, *, started):
        if record.args == [1] and not broken_once:
            broken_once.append(record.id)
            raise RuntimeError("engine bug")
        return real(record, decision, engine_id, started=started)

    monkeypatch.setattr(_run, "outcome_for", flaky_outcome_for)
    async with engine:
        records = [await job.enqueue(n) for n in range(3)]
        await engine.workoff()
        states = [await engine.get_job(r.id) for r in records]
    assert [s.state for s in states] == [JobState.COMPLETED, JobState.WAITING, JobState.COMPLETED]
    assert "the engine failed while running this attempt: RuntimeError: engine bug" in states[1].errors[0]["message"]


class _Unprintable(Exception):
    """A user's exception whose message cannot be read."""

    def __str__(self) -> str:
        raise RuntimeError("no message for you")


@pytest.mark.parametrize("hooked", [False, True], ids=["light-road", "supervised"])
async def test_an_exception_whose_str_raises_is_recorded_as_itself(make_engine, hooked) -> None:
    """Its name, a placeholder message and its traceback are stored, and its retry policy applies
    (not an engine failure)."""
    engine = make_engine()
    after: list[int] = []

    @engine.job(max_attempts=3, retry=lambda attempt: 0,
                **({"after_perform": lambda record, outcome: after.append(record.id)} if hooked else {}))
    async def unprintable() -> None:
        raise _Unprintable()

    async with engine:
        record = await unprintable.enqueue()
        await engine.workoff()
        done = await engine.get_job(record.id)
    assert done.state is JobState.FAILED and len(done.errors) == 3  # retried at once, as its policy says
    for error in done.errors:
        assert error["name"] == "_Unprintable"
        assert error["message"] == "<_Unprintable whose message could not be read>"
        assert "raise _Unprintable()" in error["traceback"]
    assert after == ([record.id] * 3 if hooked else [])


async def test_claims_wait_for_a_slow_writer(make_engine, monkeypatch) -> None:
    """Fault injection: outcome writes take 50 ms each. The dispatcher claims no more while a
    claim batch of outcomes waits for the write after the one in flight, so finished jobs do
    not pile up in memory (slots free as bodies end, so without it all 150 jobs would be
    claimed and finished long before their outcomes are written); every job completes."""
    from aiojobs_engine import QueueConfig

    engine = make_engine(claim_batch_size=10, queues={"default": QueueConfig(concurrency=50)})

    @engine.job()
    async def job(n: int) -> int:
        return n

    async with engine:
        await engine.enqueue_many([job.new(n) for n in range(150)])
        backend = engine._backend
        original = backend.job_write_many
        unwritten: list[int] = []  # at each write: its outcomes, and those queued behind it

        async def slow(starts, outcomes, **kwargs):
            assert engine._runtime is not None
            unwritten.append(len(outcomes) + engine._runtime.writer.pending)
            await asyncio.sleep(0.05)
            return await original(starts, outcomes, **kwargs)

        monkeypatch.setattr(backend, "job_write_many", slow)
        assert await engine.workoff() == 150
        counts = await engine.backend.job_count()
    assert counts == {("default", JobState.COMPLETED): 150}
    # Claims stop once 10 wait behind the write in flight; the claim that crossed the line
    # adds at most 10 more: at most 19 behind, and a write takes at most what waited.
    assert max(unwritten) <= 40, unwritten


async def test_a_poll_held_back_by_a_slow_writer_is_made_up(make_engine, monkeypatch) -> None:
    """Fault injection: a busy queue keeps the writer behind (writes take 200 ms), so nearly
    every poll comes while claims are held back. A job of an idle queue that comes due with
    nothing to wake the engine (a delay) is still claimed within a poll or two: the held-back
    poll is owed, and the next claim asks every queue. (Without that, it waited for a poll
    that fell where no write was behind: seconds.)"""
    from aiojobs_engine import QueueConfig

    queues = {"busy": QueueConfig(concurrency=10, priority=1), "idle": QueueConfig(concurrency=1, priority=2)}
    worker = make_engine(poll_interval=0.2, claim_batch_size=10, queues=queues)
    client = make_engine()
    for engine in (worker, client):
        @engine.job(queue="busy", name="busy")
        async def busy(n: int) -> None:
            return None

        @engine.job(queue="idle", name="idle")
        async def idle(n: int) -> None:
            return None

    async with client:
        await client.enqueue_many([client.options(queue="busy").new("busy", n) for n in range(2000)])
        async with worker.running():
            original = worker._backend.job_write_many
            slow_writes = 0

            async def slow(starts, outcomes, **kwargs):
                nonlocal slow_writes
                await asyncio.sleep(0.2)  # the injected fault: a slow database
                slow_writes += 1
                return await original(starts, outcomes, **kwargs)

            monkeypatch.setattr(worker._backend, "job_write_many", slow)
            await eventually(lambda: slow_writes >= 2, message="slow writes")  # the writer is behind by now
            delayed = await client.options(queue="idle", delay=0.3).enqueue("idle", 0)
            assert delayed is not None
            done = await worker.wait_for(delayed.id, timeout=10)
            busy_left = (await worker.backend.job_count()).get(("busy", JobState.WAITING), 0)
    assert done.state is JobState.COMPLETED
    assert done.attempted_at is not None
    assert (done.attempted_at - done.available_at).total_seconds() < 1.5
    assert busy_left > 0  # the busy queue kept the writer behind all along
