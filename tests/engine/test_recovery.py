"""Recovery from outside: jobs held by engines that died come back in their place in line, at
once, and every take-back is logged (issue 19's defects)."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta

import pytest

from aiojobs_engine import Engine, JobState, QueueConfig
from aiojobs_engine._backends._protocol import EngineRegistration, JobClaim, QueueDemand
from tests._waiting import LogWatch
from tests.engine._crashes import dead_pid, this_host


async def _crashed_engine(engine: Engine, worker_id: str, *, long_ago: bool) -> None:
    """A registration left behind by an engine that died (its process is gone)."""
    registration = EngineRegistration(id=worker_id, incarnation=os.urandom(4).hex(), host=this_host(), pid=dead_pid(),
                                      queues=None)
    when = datetime.now(UTC) - timedelta(hours=1) if long_ago else None
    assert await engine.backend.engine_register(registration, stale_after=3600, takeover_incarnation=None, now=when)


async def _claim_as(engine: Engine, worker_id: str, queue: str, *, start: list[str]) -> list[int]:
    claimed = await engine.backend.job_claim(JobClaim(engine_id=worker_id, demands=[QueueDemand(queue, 10)],
                                                      start_now=start))
    return [r.id for r in claimed]


async def test_a_restart_under_the_same_id_logs_what_it_took_back(make_engine) -> None:
    """An orphan goes back to waiting and runs; a job whose last attempt died with the earlier
    life fails for good; both are said, with counts and ids, as the reaper says a rescue."""
    engine = make_engine(worker_id="stable-1", stale_after=3600, heartbeat_interval=0.2)
    ran: list[str] = []

    @engine.job(queue="q", max_attempts=5)
    async def orphan() -> None:
        ran.append("orphan")

    @engine.job(queue="poison", max_attempts=1)
    async def poison() -> None:
        ran.append("poison")

    async with engine:
        orphaned = await orphan.enqueue()
        poisoned = await poison.enqueue()
        assert orphaned and poisoned
        await _crashed_engine(engine, "stable-1", long_ago=False)
        await _claim_as(engine, "stable-1", "q", start=[])
        await _claim_as(engine, "stable-1", "poison", start=["poison"])  # its one attempt began, then it died
        async with LogWatch() as logs, engine.running():
            await engine.wait_for(orphaned.id, timeout=5)
            rescued = logs.of("jobs.rescued")
        failed = await engine.get_job(poisoned.id)
    assert failed and failed.state is JobState.FAILED and failed.errors[-1]["name"] == "EngineLost"
    assert ran == ["orphan"]
    assert len(rescued) == 1, [r.getMessage() for r in rescued]
    said = rescued[0]
    assert said.levelname == "WARNING"
    assert "rescued 2 job(s) of an earlier life of worker id stable-1: 1 back to waiting, 1 failed for good" \
        in said.getMessage()
    assert sorted(said.job_ids) == sorted([orphaned.id, poisoned.id])  # type: ignore[attr-defined]
    assert said.failed_ids == [poisoned.id]  # type: ignore[attr-defined]


@pytest.mark.parametrize("how", ["rescued", "taken back"])
async def test_jobs_rescued_run_before_newer_jobs_of_their_priority(make_engine, how: str) -> None:
    """Joystick's rule: a job interrupted by its engine's death keeps its place in line."""
    worker_id = "dead-1" if how == "rescued" else "stable-2"
    engine = make_engine(worker_id=None if how == "rescued" else worker_id, queues={"q": QueueConfig(concurrency=1)})
    order: list[str] = []

    @engine.job(queue="q")
    async def step(label: str) -> None:
        order.append(label)

    async with engine:
        interrupted = await step.enqueue("interrupted")
        assert interrupted
        await _crashed_engine(engine, worker_id, long_ago=how == "rescued")
        assert await _claim_as(engine, worker_id, "q", start=["step"]) == [interrupted.id]
        newer = await step.enqueue("newer")
        assert newer and newer.available_at > interrupted.available_at
        if how == "rescued":
            assert await engine.workoff() == 2  # a workoff rescues first, as every reaper would
        else:
            async with engine.running():  # a restart takes its orphans back before it claims
                await engine.wait_for(newer.id, timeout=5)
    assert order == ["interrupted", "newer"]


async def test_a_rescue_wakes_idle_engines_at_once(make_engine) -> None:
    """An engine that polls every 30 s, and reaps once an hour, starts a job another engine's
    reaper rescued at once (a notification on PostgreSQL, the change watch on SQLite)."""
    idle = make_engine(poll_interval=30.0, reaper_interval=3600.0, queues=["q"])
    reaper = make_engine(queues=["elsewhere"])  # works another queue: only its reaper matters
    started = asyncio.Event()

    @idle.job(queue="q", name="victim")
    async def victim() -> None:
        started.set()

    async with idle:
        record = await idle.enqueue("victim")
        assert record
        await _crashed_engine(idle, "dead-2", long_ago=False)  # fresh until stale_after (0.6 s) from now
        assert await _claim_as(idle, "dead-2", "q", start=["victim"]) == [record.id]
        async with idle.running():  # it polls and reaps now, while the dead engine still looks alive
            t0 = time.monotonic()
            async with reaper.running():
                await asyncio.wait_for(started.wait(), 10)
            assert time.monotonic() - t0 < 5  # not the idle engine's 30 s poll
            done = await idle.wait_for(record.id, timeout=5)
    assert done.state is JobState.COMPLETED and done.attempt == 2
