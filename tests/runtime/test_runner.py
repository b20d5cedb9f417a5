"""The runner: each claim lives one run, from the claim to exactly one fenced outcome, and a
body that is told to stop and does not keeps its job (and slot) until it really ends."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any

import pytest

from aiojobs_engine._control import Cancel, Delete, Retry, Snooze
from aiojobs_engine._definitions import Registry
from aiojobs_engine._errors import BackendUnavailableError
from aiojobs_engine._records import JobRecord, JobState
from aiojobs_engine._retry import ConstantBackoff
from aiojobs_engine._runtime._run import STOP_GRACE, Run, RunState, Stop
from tests._waiting import eventually

from ._fake import FakeBackend
from ._support import Logs, RunnerRig, declare

W, C, R, D, F, S, X = (JobState.WAITING, JobState.COMPLETED, JobState.RUNNING, JobState.CANCELED, JobState.FAILED,
                       JobState.SNOOZED, JobState.CLAIMED)


async def _one(rig: RunnerRig, *, start_now: bool = True) -> JobRecord:
    (record,) = await rig.claim(start_now=start_now)
    return record


def _stubborn(began: asyncio.Event, told: asyncio.Event, release: asyncio.Event) -> Any:
    """A body that swallows the cancellation it is sent and ends only when released."""
    async def stubborn() -> str:
        began.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            told.set()
        await release.wait()
        return "ended anyway"
    return stubborn


@pytest.mark.parametrize(("end", "max_attempts", "state", "attempt", "due_in", "error"), [
    pytest.param(42, 5, C, 1, 0, None, id="completed"),
    pytest.param(ValueError("boom"), 5, W, 1, 7, "ValueError", id="failed-retried-after-its-backoff"),
    pytest.param(ValueError("boom"), 1, F, 1, 0, "ValueError", id="failed-for-good"),
    pytest.param(Retry(delay=3), 5, W, 1, 3, "Retry", id="retry-signal"),
    pytest.param(Snooze(30), 5, S, 0, 30, None, id="snoozed-attempt-given-back"),
    pytest.param(Cancel("not needed"), 5, D, 1, 0, "Canceled", id="canceled"),
])
async def test_a_run_ends_in_exactly_one_outcome(rig: RunnerRig, fake: FakeBackend, registry: Registry, end: object,
                                                 max_attempts: int, state: JobState, attempt: int, due_in: float,
                                                 error: str | None) -> None:
    async def work() -> object:
        if isinstance(end, BaseException):
            raise end
        return end

    declare(registry, work, retry=ConstantBackoff(7))
    (seeded,) = fake.seed("work", max_attempts=max_attempts)
    await _one(rig)
    await rig.idle()
    job = fake.job(seeded.id)
    assert (job.state, job.attempt) == (state, attempt)
    assert job.available_at == seeded.available_at + timedelta(seconds=due_in)
    assert [e["name"] for e in job.errors] == ([error] if error else [])
    assert job.result == (42 if state is C else None)
    assert len(fake.outcomes_for(job.id)) == 1 and rig.released == ["q"]
    assert rig.runner.attempts_started == 1


async def test_a_body_that_deletes_its_job_removes_it(rig: RunnerRig, fake: FakeBackend, registry: Registry) -> None:
    async def work() -> None:
        raise Delete

    declare(registry, work)
    (seeded,) = fake.seed("work")
    await _one(rig)
    await rig.idle()
    assert seeded.id not in fake.jobs and len(fake.outcomes_for(seeded.id)) == 1


async def test_a_stop_that_comes_while_the_outcome_is_written_changes_nothing(
        rig: RunnerRig, fake: FakeBackend, registry: Registry) -> None:
    async def work() -> str:
        return "done"

    declare(registry, work)
    (seeded,) = fake.seed("work")
    release = fake.block("job_write_many")
    record = await _one(rig)
    await fake.wait_calls("job_write_many", 1)  # decided: its outcome is on its way
    assert rig.runner.undecided_claims() == []
    rig.runner.cancel(record.id)
    rig.runner.let_go(record.id, record.claim_token or "")
    release.set()
    await rig.idle()
    assert fake.job(seeded.id).state is C and len(fake.outcomes_for(seeded.id)) == 1


async def test_an_async_body_past_its_timeout_is_cancelled_and_fails_the_attempt(
        rig: RunnerRig, fake: FakeBackend, registry: Registry) -> None:
    async def slow() -> None:
        await asyncio.Event().wait()

    declare(registry, slow, retry=ConstantBackoff(1))
    (seeded,) = fake.seed("slow", timeout=0.02)
    await _one(rig)
    await rig.idle()
    job = fake.job(seeded.id)
    assert (job.state, job.attempt) == (W, 1)
    assert job.errors[0]["name"] == "JobTimeoutError" and job.errors[0]["message"] == "timed out after 0.02s"


async def test_a_body_that_swallows_its_timeout_keeps_its_job_and_slot_until_it_ends(
        rig: RunnerRig, fake: FakeBackend, registry: Registry) -> None:
    began, told, release = asyncio.Event(), asyncio.Event(), asyncio.Event()
    declare(registry, _stubborn(began, told, release), name="stubborn")
    (seeded,) = fake.seed("stubborn", timeout=0.02, max_attempts=1)
    await _one(rig)
    async with asyncio.timeout(2):
        await told.wait()  # its timeout came, and it carried on
    assert not await rig.slot_given_back(within=0.1)
    assert fake.outcomes_for(seeded.id) == [] and fake.job(seeded.id).state is R
    assert [claim.id for claim in rig.runner.undecided_claims()] == [seeded.id]
    release.set()
    await rig.idle()
    job = fake.job(seeded.id)
    assert job.state is F and job.errors[0]["message"].startswith("timed out after 0.02s")
    assert job.result is None  # what it returned late is discarded
    assert rig.released == ["q"] and len(fake.outcomes_for(seeded.id)) == 1


async def _a_body_that_waits(rig: RunnerRig, fake: FakeBackend, registry: Registry) -> JobRecord:
    """Claim a job whose body waits for ever; its claimed record, once the body began."""
    began = asyncio.Event()

    async def waits() -> None:
        began.set()
        await asyncio.Event().wait()

    declare(registry, waits)
    fake.seed("waits")
    record = await _one(rig)
    async with asyncio.timeout(2):
        await began.wait()
    return record


async def test_cancel_stops_a_running_body_and_records_it_canceled(
        rig: RunnerRig, fake: FakeBackend, registry: Registry) -> None:
    seeded = await _a_body_that_waits(rig, fake, registry)
    assert rig.runner.cancel(seeded.id) is True
    assert rig.runner.cancel(seeded.id + 100) is False  # not a job of this engine
    await rig.idle()
    job = fake.job(seeded.id)
    assert job.state is D and job.errors[-1]["message"] == "canceled while running"


async def test_let_go_stops_the_run_and_its_outcome_is_refused(
        rig: RunnerRig, fake: FakeBackend, registry: Registry, logs: Logs) -> None:
    record = seeded = await _a_body_that_waits(rig, fake, registry)
    fake.take_away(seeded.id)  # rescued elsewhere meanwhile
    taken = fake.job(seeded.id)
    rig.runner.let_go(seeded.id, record.claim_token or "")
    await rig.idle()
    assert fake.job(seeded.id) == taken  # the job's current state stands
    (outcome,) = fake.outcomes_for(seeded.id)
    assert outcome.token == record.claim_token
    assert len(logs.of("job.outcome_refused")) == 2  # one when let go, one when its write is refused


async def test_a_start_that_finds_its_claim_gone_writes_nothing(
        rig: RunnerRig, fake: FakeBackend, registry: Registry) -> None:
    ran: list[int] = []

    def blocking() -> None:  # a thread body: its claim leaves it claimed, to be started by a write
        ran.append(1)

    declare(registry, blocking)
    (seeded,) = fake.seed("blocking")
    record = await _one(rig)
    assert record.state is X
    fake.take_away(seeded.id)  # before the run's first step
    await rig.idle()
    assert ran == [] and fake.outcomes_for(seeded.id) == [] and fake.job(seeded.id).state is W
    assert rig.released == ["q"] and rig.runner.attempts_started == 0


async def test_a_stop_during_okay_to_run_cancels_the_job_before_it_starts(
        rig: RunnerRig, fake: FakeBackend, registry: Registry) -> None:
    asked = asyncio.Event()
    ran: list[int] = []

    async def okay_to_run(record: JobRecord) -> bool:
        asked.set()
        await asyncio.Event().wait()
        return True

    async def work() -> None:
        ran.append(1)

    declare(registry, work, okay_to_run=okay_to_run)
    (seeded,) = fake.seed("work")
    await _one(rig)
    async with asyncio.timeout(2):
        await asked.wait()
    rig.runner.cancel(seeded.id)
    await rig.idle()
    job = fake.job(seeded.id)
    assert ran == [] and (job.state, job.attempt) == (D, 0)
    assert job.errors[-1]["message"] == "canceled before it started"
    (outcome,) = fake.outcomes_for(seeded.id)
    assert outcome.from_state is X and rig.runner.attempts_started == 0


async def test_hand_back_all_leaves_a_stubborn_body_behind_and_gives_its_job_back(
        rig: RunnerRig, fake: FakeBackend, registry: Registry) -> None:
    began, told, release = asyncio.Event(), asyncio.Event(), asyncio.Event()
    declare(registry, _stubborn(began, told, release), name="stubborn")
    (seeded,) = fake.seed("stubborn")
    await _one(rig)
    async with asyncio.timeout(2):
        await began.wait()
    assert await rig.runner.hand_back_all(1.0) == 1
    assert told.is_set() and not release.is_set()  # the body still runs
    job = fake.job(seeded.id)
    assert (job.state, job.attempt, job.claim_token) == (W, 0, None)  # its attempt given back
    assert job.available_at == seeded.available_at  # its place in line kept
    release.set()
    await rig.idle()
    assert len(fake.outcomes_for(seeded.id)) == 1  # the body's own end writes nothing more


async def test_a_second_claim_while_the_earlier_body_runs_here_is_deferred(
        rig: RunnerRig, fake: FakeBackend, registry: Registry) -> None:
    began, told, release = asyncio.Event(), asyncio.Event(), asyncio.Event()
    bodies: list[int] = []
    stubborn = _stubborn(began, told, release)

    async def counted() -> str:
        bodies.append(1)
        return str(await stubborn())

    declare(registry, counted)
    (seeded,) = fake.seed("counted")
    first = await _one(rig)
    async with asyncio.timeout(2):
        await began.wait()
    fake.take_away(seeded.id)
    rig.runner.let_go(seeded.id, first.claim_token or "")
    async with asyncio.timeout(2):
        await told.wait()  # told to stop; it runs on
    second = await _one(rig)  # the job came back to this engine
    assert second.id == seeded.id and second.attempt == 2
    await fake.wait_calls("job_write_many", 1)
    job = fake.job(seeded.id)
    assert bodies == [1] and (job.state, job.attempt) == (W, 1)  # not run; its attempt given back
    assert job.available_at == fake.clock.now() + timedelta(seconds=STOP_GRACE)
    release.set()
    await rig.idle()
    assert fake.job(seeded.id) == job  # the first run's outcome is refused
    assert len(fake.outcomes_for(seeded.id)) == 2


async def test_a_thread_body_past_its_timeout_keeps_its_slot_until_it_ends(
        rig: RunnerRig, fake: FakeBackend, registry: Registry) -> None:
    began, release = threading.Event(), threading.Event()

    def blocking() -> str:
        began.set()
        release.wait(10)
        return "late"

    declare(registry, blocking)
    (seeded,) = fake.seed("blocking", timeout=0.02)
    await _one(rig)
    assert await asyncio.to_thread(began.wait, 2)
    assert not await rig.slot_given_back(within=0.2)  # ten times its timeout: nothing can stop a thread
    assert fake.outcomes_for(seeded.id) == [] and fake.job(seeded.id).state is R
    release.set()
    await rig.idle()
    job = fake.job(seeded.id)
    assert job.errors[0]["name"] == "JobTimeoutError" and job.result is None
    assert rig.released == ["q"]


async def test_attempts_are_counted_when_they_start_by_the_claim_or_by_the_start_write(
        rig: RunnerRig, fake: FakeBackend, registry: Registry) -> None:
    async def quick() -> None:
        return None

    def blocking() -> None:
        return None

    declare(registry, quick)
    declare(registry, blocking)
    fake.seed("quick")
    fake.seed("blocking")
    records = await rig.claim(limit=2)
    assert [r.state for r in records] == [R, X]
    assert rig.runner.attempts_started == 1  # the claim started one
    await rig.idle()
    assert rig.runner.attempts_started == 2  # the other by its start's write
    assert all(job.state is C and job.attempt == 1 for job in fake.jobs.values())


_MOVES = {
    RunState.CLAIMED: {RunState.RUNNING, RunState.DECIDED},
    RunState.RUNNING: {RunState.STOPPING, RunState.DECIDED},
    RunState.STOPPING: {RunState.DECIDED},
    RunState.DECIDED: {RunState.DONE},
    RunState.DONE: set(),
}


@pytest.mark.parametrize("before", list(RunState))
@pytest.mark.parametrize("after", list(RunState))
async def test_a_run_changes_state_only_along_its_life(rig: RunnerRig, fake: FakeBackend, before: RunState,
                                                        after: RunState) -> None:
    (record,) = fake.seed()
    run = Run(rig.runner, record, None)
    run.state = before
    if after in _MOVES[before]:
        run._to(after)  # the one way a run changes state (no public door to it)
        assert run.state is after
    else:
        with pytest.raises(RuntimeError, match=f"from {before.name} to {after.name}"):
            run._to(after)
        assert run.state is before



# -- found in review: nothing may end a run without its outcome, and a stop's outcome is right


class _Odd(BaseException):
    """Not an ``Exception``: what pytest's ``fail()`` raises is one of these."""


@pytest.mark.parametrize("how", ["base-exception", "own-cancel", "cancel-turned-into-timeout"])
async def test_no_ending_of_a_body_leaves_its_claim_without_an_outcome(
        rig: RunnerRig, fake: FakeBackend, registry: Registry, how: str) -> None:
    """A body that raises a BaseException, or cancels its own task: the attempt fails, the
    slot goes back, the runner is told it is idle (a draining producer waits for that)."""
    async def work() -> None:
        if how == "base-exception":
            raise _Odd("not an Exception")
        if how == "own-cancel":
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await asyncio.Event().wait()
        raise TimeoutError("the body's own timeout")

    declare(registry, work, retry=ConstantBackoff(5))
    (seeded,) = fake.seed("work")
    await _one(rig)
    await rig.idle()
    job = fake.job(seeded.id)
    assert (job.state, job.attempt) == (W, 1)  # a failed attempt, retried after its backoff
    expected = {"base-exception": "_Odd", "own-cancel": "TaskCancelledError",
                "cancel-turned-into-timeout": "TimeoutError"}[how]
    assert [e["name"] for e in job.errors] == [expected]
    assert rig.released == ["q"] and rig.idle_calls == 1
    assert len(fake.outcomes_for(seeded.id)) == 1


async def test_a_stop_turned_into_another_error_by_the_body_still_ends_as_the_stop_says(
        rig: RunnerRig, fake: FakeBackend, registry: Registry) -> None:
    began = asyncio.Event()

    async def work() -> None:
        began.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise TimeoutError("a client library's own timeout") from None

    declare(registry, work)
    (seeded,) = fake.seed("work")
    record = await _one(rig)
    async with asyncio.timeout(2):
        await began.wait()
    rig.runner.cancel(record.id)
    await rig.idle()
    job = fake.job(seeded.id)
    assert job.state is D and job.errors[-1]["message"] == "canceled while running"


async def test_a_job_that_cancels_itself_is_canceled_and_reported(
        rig: RunnerRig, fake: FakeBackend, registry: Registry, logs: Logs) -> None:
    """engine.cancel() of its own id from inside the body: told, not interrupted (a task
    cannot take back a cancellation it asked of itself), so its report is not lost."""
    runner = rig.runner

    async def work() -> str:
        from aiojobs_engine import current_job

        runner.cancel(current_job().id)
        return "returned anyway"

    declare(registry, work)
    (seeded,) = fake.seed("work")
    await _one(rig)
    await rig.idle()
    job = fake.job(seeded.id)
    assert job.state is D and rig.released == ["q"]
    assert [r.getMessage() for r in logs.of("job.canceled")] == [f"job {seeded.id} (work) canceled"]


async def test_at_shutdown_a_thread_past_its_timeout_is_recorded_as_timed_out_not_handed_back(
        rig: RunnerRig, fake: FakeBackend, registry: Registry) -> None:
    """Handing it back would give its attempt back: a body that never ends would then never
    fail, deploy after deploy."""
    release = threading.Event()
    began = threading.Event()

    def blocking() -> None:
        began.set()
        release.wait(10)

    declare(registry, blocking)
    (seeded,) = fake.seed("blocking", timeout=0.02)
    await rig.claim(start_now=False)
    # Its deadline passed: told to stop, which a thread cannot.
    await eventually(lambda: [run.stop_reason for run in rig.runner._runs.values()] == [Stop.TIMEOUT], timeout=2)
    assert await rig.runner.hand_back_all(1.0) == 1
    release.set()
    job = fake.job(seeded.id)
    assert job.state is W and job.attempt == 1  # charged: it failed by timeout, and retries
    assert job.errors[-1]["name"] == "JobTimeoutError"


async def test_a_before_perform_hook_that_hangs_at_shutdown_is_cut_short_and_the_attempt_given_back(
        rig: RunnerRig, fake: FakeBackend, registry: Registry) -> None:
    hooked = asyncio.Event()

    async def hangs(record: JobRecord) -> None:
        hooked.set()
        await asyncio.Event().wait()

    async def work() -> str:
        return "never"

    declare(registry, work, before_perform=hangs)
    (seeded,) = fake.seed("work")
    await _one(rig)
    async with asyncio.timeout(2):
        await hooked.wait()
    assert await rig.runner.hand_back_all(1.0) == 1
    await rig.idle()
    job = fake.job(seeded.id)
    assert (job.state, job.attempt) == (W, 0)  # handed back, its attempt not charged
    assert job.available_at == seeded.available_at


async def test_an_outcome_the_writer_gave_up_on_at_shutdown_is_said_so_and_left_for_rescue(
        rig: RunnerRig, fake: FakeBackend, registry: Registry, logs: Logs) -> None:
    release = asyncio.Event()

    async def work() -> str:
        await release.wait()
        return "done, too late"

    declare(registry, work)
    (seeded,) = fake.seed("work")
    await _one(rig)
    fake.fail("job_write_many", BackendUnavailableError("the database went away"), times=None)
    release.set()
    await fake.wait_calls("job_write_many", 1)
    await rig.writer.close(0.05)
    await rig.idle()
    (said,) = [r.getMessage() for r in logs.of("component.error")]
    assert said.startswith(f"the outcome of job {seeded.id} (completed) could not be written before shutdown")
    assert fake.job(seeded.id).state is R  # still held: rescued once this engine is gone
    assert rig.released == ["q"]
