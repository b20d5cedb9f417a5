"""testing.run_job: one attempt of a job's body, here and now, with a real current_job()."""

from __future__ import annotations

import asyncio
import threading

import pytest

from aiojobs_engine import (
    ArgumentsError,
    Complete,
    ConfigurationError,
    Engine,
    EngineStateError,
    Job,
    JobState,
    JobTimeoutError,
    SerializationError,
    Snooze,
    current_job,
)
from aiojobs_engine.testing import RUN_JOB_ENGINE_ID, run_job


async def test_the_body_runs_with_a_real_context_and_its_arguments_as_stored(make_engine) -> None:
    engine = make_engine()
    seen: list[object] = []

    @engine.job(queue="email", max_attempts=3, timeout=30, priority=7)
    async def send_welcome(user_id: int, tags: tuple[str, ...], *, template: str = "plain") -> dict:
        job = current_job()
        seen.append(job)
        return {"sent_to": user_id, "tags": tags, "template": template, "attempt": job.attempt}

    result = await run_job(send_welcome.options(meta={"team": "growth"}), 42, ("a", "b"), template="fancy")
    # The body got its arguments back from JSON, as from the database: the tuple is a list.
    assert result == {"sent_to": 42, "tags": ["a", "b"], "template": "fancy", "attempt": 1}
    (context,) = seen
    record = context.record  # type: ignore[attr-defined]
    assert context.engine_id == RUN_JOB_ENGINE_ID  # type: ignore[attr-defined]
    assert (record.id, record.name, record.queue, record.state, record.attempt) == (
        0, "send_welcome", "email", JobState.RUNNING, 1)
    assert (record.max_attempts, record.timeout, record.priority) == (3, 30, 7)
    assert record.args == [42, ["a", "b"]] and record.kwargs == {"template": "fancy"}
    assert record.meta == {"team": "growth"} and record.claimed_by == RUN_JOB_ENGINE_ID
    assert record.attempted_at is not None and record.attempted_at == record.claimed_at == record.inserted_at
    with pytest.raises(EngineStateError):
        current_job()  # the test's own context never had it
    async with engine:
        assert await engine.list_jobs() == []  # nothing was stored


async def test_signals_and_errors_leave_the_body_as_they_would_in_an_engine(make_engine) -> None:
    engine = make_engine()

    @engine.job
    async def decide(how: str) -> str:
        if how == "complete":
            raise Complete("early")
        if how == "snooze":
            current_job().snooze(60)
        raise LookupError(f"no {how}")

    assert await run_job(decide, "complete") == "early"
    with pytest.raises(Snooze):
        await run_job(decide, "snooze")
    with pytest.raises(LookupError, match="no thing"):
        await run_job(decide, "thing")


async def test_class_jobs_and_blocking_jobs(make_engine) -> None:
    engine = make_engine()

    @engine.job
    class Export(Job):
        def __init__(self, tenant: str) -> None:
            self.tenant = tenant
            self.seen_from_the_constructor = self.record.attempt  # the context is there already

        async def run(self, month: str) -> str:
            return f"{self.tenant}:{month}:{self.seen_from_the_constructor}"

    @engine.job  # a blocking body: on a thread of its own, with the job's context
    def count(limit: int) -> dict:
        return {"thread": threading.current_thread().name, "job": current_job().record.name, "sum": sum(range(limit))}

    assert await run_job(Export.options(constructor_args=["acme"]), "2030-01") == "acme:2030-01:1"
    result = await run_job(count, 10)
    assert result == {"thread": "aiojobs-run-job-count", "job": "count", "sum": 45}
    with pytest.raises(ArgumentsError, match="constructor"):
        await run_job(Export, "2030-01")  # no constructor_args


async def test_the_jobs_timeout_applies(make_engine) -> None:
    engine = make_engine()
    never = asyncio.Event()

    @engine.job(timeout=0.05)
    async def hangs() -> None:
        await never.wait()

    @engine.job(timeout=30)
    async def gives_up() -> None:
        raise TimeoutError("the remote API timed out")

    with pytest.raises(JobTimeoutError, match=r"job 'hangs' timed out after 0.05s"):
        await run_job(hangs)
    with pytest.raises(TimeoutError, match="the remote API") as own:
        await run_job(gives_up)  # the body's own TimeoutError is not a timeout of the job
    assert not isinstance(own.value, JobTimeoutError)


async def test_what_the_engine_would_refuse_is_refused() -> None:
    engine = Engine()

    @engine.job
    async def returns(value: object) -> object:
        return {1, 2} if value == "set" else value

    with pytest.raises(SerializationError, match="the result of job 'returns'"):
        await run_job(returns, "set")
    with pytest.raises(SerializationError):
        await run_job(returns, object())
    with pytest.raises(ArgumentsError):
        await run_job(returns, 1, 2)  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match="run_job\\(\\) takes a job handle or a Job class"):
        await run_job("returns")  # type: ignore[call-overload]
