"""CPU-bound jobs in supervised worker processes: isolation, timeouts, crashes, cancellation."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from aiojobs_engine import Engine, EventKind, JobState
from tests._waiting import events
from tests.apps import cpu_app
from tests.conftest import FAST


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[Engine]:
    cpu_app.engine.configure(url=db_url, **FAST)
    async with cpu_app.engine:
        yield cpu_app.engine


async def state_of(engine: Engine, job_id: int) -> JobState:
    record = await engine.get_job(job_id)
    assert record is not None
    return record.state


async def test_cpu_jobs_run_in_other_processes(engine: Engine) -> None:
    a = await cpu_app.crunch.enqueue(1000)
    b = await cpu_app.Square.options(constructor_args=[1]).enqueue(7)
    c = await cpu_app.retries_once.enqueue()
    assert a and b and c
    assert await engine.workoff() == 4
    done = await engine.get_job(a.id)
    assert done and done.state is JobState.COMPLETED
    assert done.result["sum"] == 499500 and done.result["pid"] != os.getpid() and done.result["attempt"] == 1
    square = await engine.get_job(b.id)
    assert square and square.result == 50
    retried = await engine.get_job(c.id)
    assert retried and retried.state is JobState.COMPLETED and retried.result == 2
    assert retried.errors[0]["name"] == "Retry"


async def test_a_crash_or_runaway_fails_only_its_own_job(engine: Engine) -> None:
    victims = [await cpu_app.runaway.enqueue(), await cpu_app.exits.enqueue(), await cpu_app.segfaults.enqueue()]
    neighbours = [await cpu_app.crunch.enqueue(10_000) for _ in range(6)]
    assert all(victims) and all(neighbours)
    await engine.workoff()
    runaway, exits, segfault = [await engine.get_job(v.id) for v in victims if v]
    assert runaway and runaway.state is JobState.FAILED and runaway.errors[0]["name"] == "JobTimeoutError"
    assert exits and exits.state is JobState.FAILED and "exited with code 3" in exits.errors[0]["message"]
    assert segfault and segfault.state is JobState.FAILED and "signal 11" in segfault.errors[0]["message"]
    for record in neighbours:
        assert record and await state_of(engine, record.id) is JobState.COMPLETED
    after = await cpu_app.crunch.enqueue(10)  # the pool has replaced its dead workers
    await engine.workoff()
    assert after and await state_of(engine, after.id) is JobState.COMPLETED


async def test_errors_and_bad_results_from_a_worker(engine: Engine) -> None:
    raised = await cpu_app.raises.enqueue("nope")
    bad = await cpu_app.returns_set.enqueue()
    assert raised and bad
    await engine.workoff()
    failed = await engine.get_job(raised.id)
    assert failed and failed.state is JobState.FAILED
    error = failed.errors[0]
    assert error["name"] == "ValueError" and error["message"] == "nope" and "raise ValueError" in error["traceback"]
    not_json = await engine.get_job(bad.id)
    assert not_json and not_json.state is JobState.FAILED and not_json.attempt == 1
    assert "JSON" in not_json.errors[0]["message"]


async def test_cancel_a_running_cpu_job_kills_its_worker(engine: Engine) -> None:
    record = await cpu_app.sleeps.enqueue(30)
    assert record
    async with events(engine, kinds={EventKind.JOB_STARTED}) as seen, engine.running():
        await seen.wait_for(lambda e: e.job.id == record.id, timeout=10)
        canceled = await engine.cancel(record.id)
        assert canceled and canceled.cancel_requested
        final = await engine.wait_for(record.id, timeout=10)
        assert final.state is JobState.CANCELED
