"""The writer: starts and outcomes batched, answered per item, retried through outages,
split around a refused item, with a backpressure signal, and a bounded close."""

from __future__ import annotations

import asyncio

import pytest

from aiojobs_engine._backends._protocol import JobOutcome, StartedJob
from aiojobs_engine._errors import BackendError, BackendUnavailableError
from aiojobs_engine._records import JobRecord, JobState
from aiojobs_engine._runtime._services import Services
from aiojobs_engine._runtime._writer import Writer

from ._fake import Call, FakeBackend
from ._support import Logs, RecordingOutage


def _done(job: JobRecord, token: str | None = None) -> JobOutcome:
    return JobOutcome(id=job.id, token=token or job.claim_token or "", from_state=JobState.RUNNING,
                      state=JobState.COMPLETED, result_json="1")


def _writer(services: Services) -> tuple[Writer, RecordingOutage, list[int]]:
    outage = RecordingOutage()
    written: list[int] = []
    writer = Writer(services, outage, on_written=lambda: written.append(1))
    return writer, outage, written


async def test_writes_asked_for_in_one_loop_iteration_go_in_one_batch(services: Services, fake: FakeBackend) -> None:
    writer, _, written = _writer(services)
    claimed = fake.seed(count=2, state=JobState.CLAIMED)
    running = fake.seed(count=3, state=JobState.RUNNING, attempt=1)
    replies = [writer.start(j.id, j.claim_token or "") for j in claimed] + [writer.finish(_done(j)) for j in running]
    await asyncio.gather(*replies)
    (call,) = fake.calls_to("job_write_many")
    assert [s.id for s in call.args["starts"]] == [j.id for j in claimed]
    assert [o.id for o in call.args["outcomes"]] == [j.id for j in running]
    assert written == [1]  # on_written: once per batch


async def test_a_write_asked_for_by_a_task_woken_meanwhile_joins_the_batch(
        services: Services, fake: FakeBackend) -> None:
    writer, _, _ = _writer(services)
    first, second = fake.seed(count=2, state=JobState.RUNNING, attempt=1)
    woken = asyncio.Event()

    async def one() -> bool:
        reply = writer.finish(_done(first))
        woken.set()  # another run goes on in the same turn of the loop
        return await reply

    async def other() -> bool:
        await woken.wait()
        return await writer.finish(_done(second))

    assert list(await asyncio.gather(other(), one())) == [True, True]
    assert [len(c.args["outcomes"]) for c in fake.calls_to("job_write_many")] == [2]


async def test_starts_and_outcomes_are_answered_item_by_item(services: Services, fake: FakeBackend) -> None:
    writer, _, _ = _writer(services)
    start_ok, start_gone = fake.seed(count=2, state=JobState.CLAIMED)
    done_ok, done_gone = fake.seed(count=2, state=JobState.RUNNING, attempt=1)
    fake.take_away(start_gone.id)
    replies = await asyncio.gather(
        writer.start(start_ok.id, start_ok.claim_token or ""),
        writer.start(start_gone.id, start_gone.claim_token or ""),
        writer.finish(_done(done_ok)),
        writer.finish(_done(done_gone, token="a token taken away")),
    )
    assert list(replies) == [StartedJob(start_ok.id, 1, fake.clock.now()), None, True, False]
    assert len(fake.calls_to("job_write_many")) == 1
    assert fake.job(start_ok.id).state is JobState.RUNNING and fake.job(done_ok.id).state is JobState.COMPLETED
    assert fake.job(done_gone.id).state is JobState.RUNNING  # fenced: nothing changed


async def test_a_refused_batch_is_split_until_the_bad_write_is_alone(services: Services, fake: FakeBackend) -> None:
    writer, outage, _ = _writer(services)
    jobs = fake.seed(count=5, state=JobState.RUNNING, attempt=1)
    bad = jobs[3]

    def holds_bad(call: Call) -> bool:
        return any(o.id == bad.id for o in call.args["outcomes"])

    fake.fail("job_write_many", BackendError("value out of range"), times=None, when=holds_bad)
    futures = [writer.finish(_done(j)) for j in jobs]
    replies = await asyncio.gather(*futures, return_exceptions=True)
    assert replies[:3] == [True, True, True] and replies[4] is True
    assert isinstance(replies[3], BackendError) and "out of range" in str(replies[3])
    sizes = [len(c.args["outcomes"]) for c in fake.calls_to("job_write_many")]
    assert sizes == [5, 2, 3, 1, 2, 1, 1]  # halves, until the bad one is alone
    assert [fake.job(j.id).state for j in jobs] == [JobState.COMPLETED] * 3 + [JobState.RUNNING, JobState.COMPLETED]
    assert outage.failures == []  # a refusal is no outage


async def test_an_unreachable_database_is_retried_until_the_write_goes_through(
        services: Services, fake: FakeBackend, logs: Logs) -> None:
    writer, outage, written = _writer(services)
    (job,) = fake.seed(state=JobState.RUNNING, attempt=1)
    fake.fail("job_write_many", BackendUnavailableError("connection refused"), times=2)
    assert await writer.finish(_done(job)) is True
    assert len(fake.calls_to("job_write_many")) == 3
    assert outage.failures == ["writer", "writer"] and not outage.down
    assert len(logs.of("database.down")) == 1 and len(logs.of("database.up")) == 1  # told once, and the end
    assert written == [1]  # one batch, however many tries


async def test_behind_only_while_a_write_is_in_flight_with_that_many_waiting(
        services: Services, fake: FakeBackend) -> None:
    writer, _, written = _writer(services)
    jobs = fake.seed(count=4, state=JobState.RUNNING, attempt=1)
    release = fake.block("job_write_many")
    first = writer.finish(_done(jobs[0]))
    assert not writer.behind(1)  # asked for, not in flight yet
    await fake.wait_calls("job_write_many", 1)
    assert not writer.behind(1)  # in flight, nothing waiting behind it
    rest = [writer.finish(_done(j)) for j in jobs[1:]]
    assert writer.behind(3) and not writer.behind(4)
    release.set()
    assert await asyncio.gather(first, *rest) == [True] * 4
    assert not writer.behind(1)
    assert [len(c.args["outcomes"]) for c in fake.calls_to("job_write_many")] == [1, 3]
    assert written == [1, 1]  # on_written after each batch


async def test_close_writes_what_is_pending(services: Services, fake: FakeBackend) -> None:
    writer, _, _ = _writer(services)
    (job,) = fake.seed(state=JobState.RUNNING, attempt=1)
    reply = writer.finish(_done(job))
    await writer.close(1.0)
    assert reply.result() is True and fake.job(job.id).state is JobState.COMPLETED
    with pytest.raises(BackendError, match="closed"):
        _ = writer.finish(_done(job))


async def test_close_stops_retrying_an_unreachable_database_after_its_timeout(
        services: Services, fake: FakeBackend) -> None:
    writer, _, _ = _writer(services)
    (job,) = fake.seed(state=JobState.RUNNING, attempt=1)
    fake.fail("job_write_many", BackendUnavailableError("connection refused"), times=None)
    reply = writer.finish(_done(job))
    await fake.wait_calls("job_write_many", 1)
    await writer.close(0.1)
    with pytest.raises(BackendUnavailableError):
        reply.result()
    assert fake.job(job.id).state is JobState.RUNNING  # left held: rescued once the engine's row is gone


async def test_close_gives_up_on_a_write_that_hangs(services: Services, fake: FakeBackend) -> None:
    writer, _, _ = _writer(services)
    (job,) = fake.seed(state=JobState.RUNNING, attempt=1)
    fake.block("job_write_many")  # never released
    reply = writer.finish(_done(job))
    await fake.wait_calls("job_write_many", 1)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await writer.close(0.05)  # the write's own deadline, then one second more
    assert loop.time() - began < 2.0
    with pytest.raises(BackendError, match="gave up"):
        reply.result()
