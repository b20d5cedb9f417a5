"""The backend conformance suite: what every ``Backend`` must do, as pytest tests.

Both built-in backends run it; an adapter of your own can too. Subclass ``BackendConformance``
in a test module and provide an async ``backend`` fixture (opened, migrated, on an empty
database) and a ``second_backend`` fixture (another backend object on the same database,
for races)::

    class TestMyBackend(BackendConformance):
        @pytest.fixture
        async def backend(self):
            b = MyBackend(...); await b.open(); await b.migrate()
            yield b
            await b.close()

Needs pytest and pytest-asyncio (``asyncio_mode = "auto"``). Times are passed explicitly,
so the suite does not depend on the wall clock.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from dataclasses import replace as dataclass_replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ._backends._protocol import (
    NOTIFY_CHANGED,
    NOTIFY_ENQUEUED,
    Backend,
    ClaimToStop,
    EngineRegistration,
    Heartbeat,
    JobClaim,
    JobFilter,
    JobInsert,
    JobOutcome,
    JobStart,
    QueueChange,
    QueueDemand,
    Retention,
)
from ._errors import BackendError, UniqueConflictError
from ._records import JobRecord, JobState

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
PENDING = (JobState.WAITING, JobState.SNOOZED, JobState.CLAIMED, JobState.RUNNING)
KEEP = Retention(completed=60, failed=None, canceled=60)  # the engine's retention in these tests
# The two ways jobs are rescued, by the engine that held them: its death (any live engine's
# reaper, here of an engine that never registered), and its restart under the same id.
RESCUES: dict[str, dict[str, Any]] = {"gone": {"stale_after": 10}, "me": {"engine_id": "me"}}


def insert(queue: str = "default", name: str = "job", *, priority: int = 50, max_attempts: int = 5,
           delay: float | None = None, run_at: datetime | None = None, args: list[Any] | None = None,
           kwargs: dict[str, Any] | None = None, timeout: float | None = None,
           meta: dict[str, Any] | None = None) -> JobInsert:
    return JobInsert(
        queue=queue, name=name, args_json=json.dumps(args or []), kwargs_json=json.dumps(kwargs or {}),
        constructor_args_json="[]", meta_json=json.dumps({"tag": "x"} if meta is None else meta), retry_json=None,
        priority=priority, max_attempts=max_attempts, timeout=timeout, delay=delay, run_at=run_at,
    )


def unique(key: str, *, states: tuple[JobState, ...] = (JobState.WAITING, JobState.SNOOZED, JobState.CLAIMED,
                                                       JobState.RUNNING),
           replace: bool = False, stuck_after: float = 3600) -> JobInsert:
    return dataclass_replace(insert(), unique_key=key, unique_states=states, unique_replace=replace,
                             stuck_after=stuck_after)


def keyed(key: str | None, queue: str = "api", *, priority: int = 50) -> JobInsert:
    return dataclass_replace(insert(queue, priority=priority), concurrency_key=key)


def per_key(engine: str = "e1", limit: int = 10, *, at: datetime = T0, queue: str = "api",
            **limits: Any) -> JobClaim:
    """A claim of ``queue`` with per-key limits (``concurrency_per_key=``, ``rate_limit_per_key=``...)."""
    return JobClaim(engine_id=engine, demands=[QueueDemand(queue, limit, **limits)], now=at)


def claim(engine: str = "e1", *demands: tuple[str, int], at: datetime = T0) -> JobClaim:
    return JobClaim(engine_id=engine, demands=[QueueDemand(q, n) for q, n in demands or [("default", 10)]], now=at)


def registration(engine_id: str = "e1", incarnation: str = "i1", pid: int = 4242) -> EngineRegistration:
    return EngineRegistration(id=engine_id, incarnation=incarnation, host="host-a", pid=pid, queues=["default"])


def outcome(record: JobRecord, state: JobState, **changes: Any) -> JobOutcome:
    fields: dict[str, Any] = {"id": record.id, "token": record.claim_token, "from_state": JobState.RUNNING,
                              "state": state}
    fields.update(changes)
    return JobOutcome(**fields)


async def finish(backend: Backend, outcomes: list[JobOutcome], now: datetime = T0) -> set[int]:
    return await backend.job_finish_many(outcomes, retention=KEEP, now=now)


async def running(backend: Backend, *inserts: JobInsert, engine: str = "e1", at: datetime = T0) -> list[JobRecord]:
    """Insert, claim and start jobs; their records with tokens."""
    await backend.job_insert_many(list(inserts) or [insert()], now=at)
    claimed = await backend.job_claim(claim(engine, at=at))
    await backend.job_start_many([JobStart(r.id, r.claim_token or "") for r in claimed], now=at)
    return claimed


async def held(backend: Backend, queue: str, engine: str, *, at: datetime = T0) -> tuple[JobRecord, JobRecord]:
    """Two jobs of ``queue`` held by ``engine``: the first started, the second only claimed."""
    await backend.job_insert_many([insert(queue, "first"), insert(queue, "second")], now=at)
    first, second = await backend.job_claim(claim(engine, (queue, 2), at=at + timedelta(seconds=1)))
    await backend.job_start_many([JobStart(first.id, first.claim_token or "")], now=at + timedelta(seconds=1))
    return first, second


class Notifications:
    """Collects a listener's payloads; waits for one without sleeping."""

    def __init__(self) -> None:
        self.payloads: list[str] = []
        self._arrived = asyncio.Event()

    def __call__(self, payload: str) -> None:
        self.payloads.append(payload)
        self._arrived.set()

    async def wait_for(self, payload: str | None = None, timeout: float = 5.0) -> str:
        """The first payload equal to ``payload`` (any payload if None), once it has arrived."""
        async with asyncio.timeout(timeout):
            while True:
                for received in self.payloads:
                    if payload is None or received == payload:
                        return received
                self._arrived.clear()
                await self._arrived.wait()


class BackendConformance:
    """Subclass with ``backend`` and ``second_backend`` fixtures; see the module docstring."""

    # -- schema -----------------------------------------------------------------------------

    async def test_migrations_are_applied_and_idempotent(self, backend: Backend) -> None:
        assert await backend.schema_version() == backend.latest_version
        assert await backend.migrate() == []

    # -- insert and read --------------------------------------------------------------------

    async def test_insert_returns_complete_records_in_order(self, backend: Backend) -> None:
        records = await backend.job_insert_many(
            [insert(name="a", args=[1, "x"], kwargs={"k": [1]}), insert(name="b", priority=3)], now=T0
        )
        assert [r.name for r in records] == ["a", "b"]
        a = records[0]
        assert a.state is JobState.WAITING and a.attempt == 0 and a.max_attempts == 5
        assert a.args == [1, "x"] and a.kwargs == {"k": [1]} and a.constructor_args == [] and a.meta == {"tag": "x"}
        assert a.inserted_at == T0 and a.available_at == T0 and a.inserted_at.tzinfo is not None
        assert a.errors == [] and a.result is None and a.claimed_by is None
        assert records[1].priority == 3 and records[1].id > a.id
        assert await backend.job_get(a.id) == a

    async def test_inserted_records_read_back_the_same(self, backend: Backend) -> None:
        tricky = insert(args=[1e20, -0.0, 1.2345678901234567e19, {"bbb": 1, "a": [2, {"z": None, "c": "é"}]}],
                        kwargs={"zz": 1.5, "aa": True}, delay=5)
        # Without an exponent the backend may keep its own JSON (read back as the same values).
        plain = insert(args=[-0.0, 0.30000000000000004, 10**30, {"bbb": 1, "a": [2, {"z": None, "c": "é"}]}],
                       kwargs={"zz": 1.5, "aa": True, "e1": "1e5"}, meta={"b": {}, "a": []})
        for records in (await backend.job_insert_many([tricky], now=T0),
                        await backend.job_insert_many([tricky, insert()], now=T0),
                        await backend.job_insert_many([plain], now=T0),
                        await backend.job_insert_many([plain, insert(), plain], now=T0)):
            for record in records:
                assert record == await backend.job_get(record.id)

    async def test_insert_single_and_empty(self, backend: Backend) -> None:
        assert await backend.job_insert_many([], now=T0) == []
        (record,) = await backend.job_insert_many([insert(timeout=2.5)], now=T0)
        assert record.timeout == 2.5
        assert await backend.job_get(record.id + 1000) is None

    async def test_delay_and_run_at_set_available_at(self, backend: Backend) -> None:
        later = T0 + timedelta(hours=1)
        delayed, scheduled = await backend.job_insert_many(
            [insert(delay=30), insert(run_at=later)], now=T0
        )
        assert delayed.available_at == T0 + timedelta(seconds=30)
        assert scheduled.available_at == later

    async def test_a_batch_stores_each_jobs_own_optional_values(self, backend: Backend) -> None:
        # Each optional column set on one job of the batch only (batches send an unset
        # column as a whole, so a mix-up would move a value to its neighbour or drop it).
        later = T0 + timedelta(hours=2)
        batch = [insert(), insert(timeout=2.5), insert(delay=30), insert(run_at=later),
                 replace(insert(), retry_json='{"kind": "constant", "delay": 3}'),
                 replace(insert(), rescheduled_from=7), insert()]
        records = await backend.job_insert_many(batch, now=T0)
        stored = [await backend.job_get(r.id) for r in records]
        assert stored == records
        assert [r.timeout for r in records] == [None, 2.5, None, None, None, None, None]
        assert [r.available_at for r in records] == [T0, T0, T0 + timedelta(seconds=30), later, T0, T0, T0]
        assert [r.retry for r in records] == [None] * 4 + [{"kind": "constant", "delay": 3}] + [None] * 2
        assert [r.rescheduled_from for r in records] == [None] * 5 + [7, None]

    async def test_insert_registers_the_queue(self, backend: Backend) -> None:
        await backend.job_insert_many([insert(queue="mail")], now=T0)
        queues = {q.name: q for q in await backend.queue_list()}
        assert queues["mail"].concurrency == 10 and queues["mail"].priority == 50 and not queues["mail"].paused

    # -- uniqueness -------------------------------------------------------------------------

    async def test_a_held_unique_key_returns_the_holder_instead_of_inserting(self, backend: Backend) -> None:
        first = await backend.job_insert_many([unique("k")], now=T0)
        again = await backend.job_insert_many([unique("k"), unique("other"), insert()], now=T0)
        assert again[0] == first[0] and again[1].unique_key == "other" and again[2].unique_key is None
        assert len(await backend.job_list(JobFilter())) == 3
        batch = await backend.job_insert_many([unique("dup"), unique("dup")], now=T0)  # within one batch
        assert batch[0].id == batch[1].id

    async def test_a_finished_job_frees_its_key_unless_its_states_say_otherwise(self, backend: Backend) -> None:
        (job,) = await running(backend, unique("k"))
        (kept,) = await running(backend, unique("forever", states=tuple(JobState)))
        await finish(backend, [outcome(job, JobState.COMPLETED, result_json="1"),
                                                                outcome(kept, JobState.COMPLETED, result_json="1")],
                                      now=T0)
        (new,) = await backend.job_insert_many([unique("k")], now=T0)
        assert new.id != job.id and new.state is JobState.WAITING
        (same,) = await backend.job_insert_many([unique("forever", states=tuple(JobState))], now=T0)
        assert same.id == kept.id and same.state is JobState.COMPLETED

    async def test_replace_cancels_pending_and_stuck_holders_but_not_young_running_ones(self, backend: Backend) -> None:
        (pending,) = await backend.job_insert_many([unique("pending")], now=T0)
        (new,) = await backend.job_insert_many([unique("pending", replace=True)], now=T0 + timedelta(seconds=1))
        old = await backend.job_get(pending.id)
        assert new.id != pending.id and old is not None and old.state is JobState.CANCELED
        assert old.errors[-1]["name"] == "Replaced"
        (young,) = await running(backend, unique("young"))
        (kept,) = await backend.job_insert_many([unique("young", replace=True, stuck_after=3600)],
                                                now=T0 + timedelta(seconds=60))
        assert kept.id == young.id and kept.state is JobState.RUNNING
        (stuck,) = await running(backend, unique("stuck"), at=T0)
        (fresh,) = await backend.job_insert_many([unique("stuck", replace=True, stuck_after=30)],
                                                 now=T0 + timedelta(seconds=60))
        gone = await backend.job_get(stuck.id)
        assert fresh.id != stuck.id and gone is not None and gone.state is JobState.CANCELED
        late = outcome(stuck, JobState.COMPLETED, result_json="1")
        assert await finish(backend, [late], now=T0) == set()  # fenced

    async def test_concurrent_unique_inserts_store_one_job(self, backend: Backend, second_backend: Backend) -> None:
        attempts = [b.job_insert_many([unique("race")], now=T0) for b in (backend, second_backend) for _ in range(10)]
        results = await asyncio.gather(*attempts)
        assert len({records[0].id for records in results}) == 1
        assert len(await backend.job_list(JobFilter())) == 1

    async def test_a_replacing_insert_that_fails_leaves_the_holder_as_it_was(self, backend: Backend) -> None:
        (holder,) = await backend.job_insert_many([unique("k")], now=T0)
        no_name: Any = None  # refused by the NOT NULL column: the insert fails after the cancel ran
        broken = dataclass_replace(insert(), name=no_name)
        later = T0 + timedelta(seconds=1)
        with pytest.raises(BackendError):
            await backend.job_insert_many([unique("k", replace=True), broken], now=later)
        with pytest.raises(BackendError):
            await backend.job_insert_many([dataclass_replace(unique("k", replace=True), name=no_name)], now=later)
        same = await backend.job_get(holder.id)
        assert same == holder and same.state is JobState.WAITING and same.canceled_at is None
        assert [j.id for j in await backend.job_list(JobFilter())] == [holder.id]
        (replacement,) = await backend.job_insert_many([unique("k", replace=True)], now=later)
        replaced = await backend.job_get(holder.id)
        assert replacement.id != holder.id and replaced is not None and replaced.state is JobState.CANCELED

    async def test_a_replaced_job_frees_its_key_even_if_canceled_holds_it(self, backend: Backend) -> None:
        states = (*PENDING, JobState.CANCELED)
        (first,) = await backend.job_insert_many([unique("c", states=states)], now=T0)
        (second,) = await backend.job_insert_many([unique("c", states=states, replace=True)], now=T0)
        old = await backend.job_get(first.id)
        assert second.id != first.id and second.state is JobState.WAITING and not second.existing
        assert old is not None and old.state is JobState.CANCELED
        (held,) = await backend.job_insert_many([unique("c", states=states)], now=T0)
        assert held.id == second.id  # the replacement holds the key now
        canceled = await backend.job_cancel(second.id, retention=KEEP, now=T0)  # canceled, not replaced:
        assert canceled is not None and canceled.state is JobState.CANCELED
        (still,) = await backend.job_insert_many([unique("c", states=states)], now=T0)
        assert still.id == second.id  # it keeps holding, as its states say

    async def test_unique_jobs_move_through_every_pending_state_without_conflict(self, backend: Backend) -> None:
        async def start() -> JobRecord:
            (claimed,) = await backend.job_claim(claim(at=T0))
            await backend.job_start_many([JobStart(claimed.id, claimed.claim_token or "")], now=T0)
            return claimed

        (job,) = await running(backend, unique("u"), engine="gone")
        rescued = await backend.job_rescue(retention=KEEP, stale_after=10, now=T0)  # running -> waiting
        assert [j.id for j in rescued.retried] == [job.id]
        job = await start()
        assert await finish(backend, [outcome(job, JobState.WAITING, delay=0)]) == {job.id}  # a retry
        job = await start()
        assert await finish(backend, [outcome(job, JobState.SNOOZED, delay=0, give_back_attempt=True)]) == {job.id}
        (same,) = await backend.job_insert_many([unique("u")], now=T0)
        assert same.id == job.id and same.existing
        job = await start()
        assert await finish(backend, [outcome(job, JobState.COMPLETED, result_json="1")]) == {job.id}
        (new,) = await backend.job_insert_many([unique("u")], now=T0)
        assert new.id != job.id  # completed is not among its states: the key is free

    async def test_retry_refuses_a_job_whose_unique_key_is_held_now(self, backend: Backend) -> None:
        (job,) = await running(backend, unique("r"))
        await finish(backend, [outcome(job, JobState.FAILED)])
        (newer,) = await backend.job_insert_many([unique("r")], now=T0)
        assert newer.id != job.id
        with pytest.raises(UniqueConflictError) as caught:
            await backend.job_retry(job.id, now=T0)
        error = caught.value
        assert (error.job_id, error.unique_key, error.holder_id) == (job.id, "r", newer.id)
        assert f"job {newer.id}" in str(error)
        unchanged = await backend.job_get(job.id)
        assert unchanged is not None and unchanged.state is JobState.FAILED
        await backend.job_cancel(newer.id, retention=KEEP, now=T0)
        retried = await backend.job_retry(job.id, now=T0)  # the key is free again
        assert retried is not None and retried.state is JobState.WAITING

    # -- claim ------------------------------------------------------------------------------

    async def test_claim_takes_due_jobs_in_priority_then_age_order(self, backend: Backend) -> None:
        await backend.job_insert_many([
            insert(name="late", delay=60), insert(name="p50-first"), insert(name="p1", priority=1),
            insert(name="p50-second"), insert(queue="other", name="elsewhere"),
        ], now=T0)
        claimed = await backend.job_claim(claim("e1", ("default", 10), at=T0 + timedelta(seconds=1)))
        assert [r.name for r in claimed] == ["p1", "p50-first", "p50-second"]
        assert all(r.state is JobState.CLAIMED and r.claimed_by == "e1" and r.claim_token for r in claimed)
        assert len({r.claim_token for r in claimed}) == 3
        assert await backend.job_claim(claim("e1", ("default", 10), at=T0 + timedelta(seconds=1))) == []
        later = await backend.job_claim(claim("e1", ("default", 10), at=T0 + timedelta(seconds=61)))
        assert [r.name for r in later] == ["late"]

    async def test_claim_can_start_jobs_at_once(self, backend: Backend) -> None:
        await backend.job_insert_many([insert(name="quick"), insert(name="slow")], now=T0)
        claimed = await backend.job_claim(JobClaim(engine_id="e1", demands=[QueueDemand("default", 10)],
                                                   now=T0 + timedelta(seconds=1), start_now=["quick"]))
        by_name = {r.name: r for r in claimed}
        quick, slow = by_name["quick"], by_name["slow"]
        assert (quick.state, quick.attempt, quick.attempted_at) == (JobState.RUNNING, 1, T0 + timedelta(seconds=1))
        assert (slow.state, slow.attempt, slow.attempted_at) == (JobState.CLAIMED, 0, None)
        assert await finish(backend, [outcome(quick, JobState.COMPLETED, result_json="1")]) == {quick.id}

    async def test_claim_respects_limits_and_queue_order(self, backend: Backend) -> None:
        await backend.job_insert_many([insert(queue="a") for _ in range(3)] + [insert(queue="b") for _ in range(3)],
                                      now=T0)
        claimed = await backend.job_claim(claim("e1", ("b", 2), ("a", 1)))
        assert [r.queue for r in claimed] == ["b", "b", "a"]

    async def test_claim_respects_global_limit(self, backend: Backend) -> None:
        await backend.job_insert_many([insert() for _ in range(5)], now=T0)
        first = await backend.job_claim(JobClaim(engine_id="e1", demands=[QueueDemand("default", 10, 2)], now=T0))
        second = await backend.job_claim(JobClaim(engine_id="e2", demands=[QueueDemand("default", 10, 3)], now=T0))
        assert len(first) == 2 and len(second) == 1

    async def test_claim_respects_rate_limit_in_any_window(self, backend: Backend) -> None:
        """At most 3 starts in any 10 s: each claim takes what the window leaves, starts it at
        once (the claim is the start the limit counts), and the window slides."""
        await backend.job_insert_many([insert("api") for _ in range(10)], now=T0)

        async def take(engine: str, at: datetime, limit: int = 10) -> list[JobRecord]:
            return await backend.job_claim(JobClaim(engine_id=engine, demands=[
                QueueDemand("api", limit, rate_limit=(3, 10.0))], now=at))

        first = await take("e1", T0, limit=2)
        assert len(first) == 2 and {j.state for j in first} == {JobState.RUNNING}
        assert {(j.attempt, j.attempted_at) for j in first} == {(1, T0)}
        assert len(await take("e2", T0 + timedelta(seconds=4))) == 1  # another engine: one left
        assert await take("e1", T0 + timedelta(seconds=9)) == []
        assert len(await take("e2", T0 + timedelta(seconds=10, milliseconds=1))) == 2  # T0's two left it
        assert await take("e1", T0 + timedelta(seconds=13)) == []
        assert len(await take("e1", T0 + timedelta(seconds=14, milliseconds=1))) == 1
        # A demand without the limit is not held back by the window: the limit is the queue's setting.
        assert len(await backend.job_claim(claim("e3", ("api", 10), at=T0 + timedelta(seconds=15)))) == 4

    async def test_a_claim_says_when_a_full_window_opens(self, backend: Backend) -> None:
        limit = (2, 10.0)
        await backend.job_insert_many([insert("api") for _ in range(3)], now=T0)

        async def take(at: datetime, count: int) -> JobClaim:
            claim = JobClaim(engine_id="e1", demands=[QueueDemand("api", count, rate_limit=limit)], now=at)
            await backend.job_claim(claim)
            return claim

        assert (await take(T0, 1)).rate_waits == {}  # one start of two: not full
        assert (await take(T0 + timedelta(seconds=4), 5)).rate_waits == {"api": pytest.approx(6.0)}  # T0's leaves
        assert (await take(T0 + timedelta(seconds=5), 5)).rate_waits == {"api": pytest.approx(5.0)}  # still full
        assert (await backend.job_claim(claim("e1", ("api", 5), at=T0 + timedelta(seconds=5)))) != []  # no limit
        assert (await take(T0 + timedelta(seconds=10, milliseconds=1), 5)).rate_waits == {}  # open, and empty

    async def test_a_window_counts_the_newest_starts_when_made_longer(self, backend: Backend) -> None:
        await backend.job_insert_many([insert("api") for _ in range(5)], now=T0)

        async def take(at: datetime, limit: tuple[int, float]) -> int:
            return len(await backend.job_claim(JobClaim(engine_id="e1", demands=[
                QueueDemand("api", 10, rate_limit=limit)], now=at)))

        assert await take(T0, (2, 1.0)) == 2
        # A minute-long window now: the two starts of a few seconds ago still count.
        assert await take(T0 + timedelta(seconds=5), (3, 60.0)) == 1
        assert await take(T0 + timedelta(seconds=61), (3, 60.0)) == 2

    async def test_a_window_goes_with_its_limit_and_its_queue(self, backend: Backend) -> None:
        await backend.queue_upsert(QueueChange(name="api", rate_limit=(1, 60.0)), now=T0)
        await backend.job_insert_many([insert("api") for _ in range(2)], now=T0)
        assert len(await backend.job_claim(JobClaim(engine_id="e1", demands=[
            QueueDemand("api", 5, rate_limit=(1, 60.0))], now=T0))) == 1
        await backend.queue_upsert(QueueChange(name="api", clear_rate_limit=True), now=T0)
        await backend.queue_upsert(QueueChange(name="api", rate_limit=(1, 60.0)), now=T0)
        # The window went with the old limit: the new one starts empty.
        assert len(await backend.job_claim(JobClaim(engine_id="e1", demands=[
            QueueDemand("api", 5, rate_limit=(1, 60.0))], now=T0 + timedelta(seconds=1)))) == 1

    async def test_rate_limit_and_global_limit_together(self, backend: Backend) -> None:
        await backend.job_insert_many([insert("api") for _ in range(6)], now=T0)
        got = await backend.job_claim(JobClaim(engine_id="e1", demands=[
            QueueDemand("api", 10, global_limit=2, rate_limit=(5, 1.0))], now=T0))
        assert len(got) == 2  # the cap is the tighter
        got = await backend.job_claim(JobClaim(engine_id="e1", demands=[
            QueueDemand("api", 10, global_limit=10, rate_limit=(5, 1.0))], now=T0))
        assert len(got) == 3  # now the window: 5 starts in the second

    # -- per-key limits ----------------------------------------------------------------------

    async def test_a_job_keeps_its_concurrency_key(self, backend: Backend) -> None:
        (one, none) = await backend.job_insert_many([keyed("tenant-1"), keyed(None)], now=T0)
        assert (one.concurrency_key, none.concurrency_key) == ("tenant-1", None)
        stored = await backend.job_get(one.id)
        assert stored is not None and stored.concurrency_key == "tenant-1"
        (single,) = await backend.job_insert_many([keyed("tenant-2")], now=T0)
        assert (await backend.job_get(single.id)).concurrency_key == "tenant-2"  # type: ignore[union-attr]

    async def test_claim_respects_concurrency_per_key(self, backend: Backend) -> None:
        """One job per key at a time, across engines; jobs with no key are not limited."""
        inserted = await backend.job_insert_many(
            [keyed("a"), keyed("a"), keyed("a"), keyed("b"), keyed("b"), keyed(None), keyed("c")], now=T0)
        first = await backend.job_claim(per_key("e1", concurrency_per_key=1))
        assert [j.id for j in first] == [inserted[i].id for i in (0, 3, 5, 6)]
        assert {j.state for j in first} == {JobState.CLAIMED}
        assert await backend.job_claim(per_key("e2", concurrency_per_key=1)) == []
        # A key's place frees when its job's outcome is stored (claimed counts as running does).
        started = await backend.job_start_many([JobStart(first[0].id, first[0].claim_token or "")], now=T0)
        assert len(started) == 1
        assert await finish(backend, [outcome(first[0], JobState.COMPLETED)]) == {first[0].id}
        second = await backend.job_claim(per_key("e2", concurrency_per_key=1))
        assert [j.id for j in second] == [inserted[1].id]

    async def test_a_busy_key_does_not_hold_the_queue_back(self, backend: Backend) -> None:
        """Forty jobs of one key ahead of one of another: the claim reaches past the busy key."""
        await backend.job_insert_many([keyed("busy") for _ in range(40)], now=T0)
        (other,) = await backend.job_insert_many([keyed("other")], now=T0)
        got = await backend.job_claim(per_key("e1", 2, concurrency_per_key=1))
        assert [j.concurrency_key for j in got] == ["busy", "other"] and got[1].id == other.id
        await backend.job_insert_many([keyed("late")], now=T0)
        # The busy key is held: its 39 waiting jobs are skipped, the newcomer is not.
        assert [j.concurrency_key for j in await backend.job_claim(per_key("e2", 5, concurrency_per_key=1))] == ["late"]

    async def test_a_backlog_deeper_than_the_first_look_is_passed_key_by_key(self, backend: Backend) -> None:
        """1,200 due jobs of a held key ahead of two others: the claim's bounded first look
        sees only the busy key, and the look key by key finds the others."""
        await backend.job_insert_many([keyed("busy") for _ in range(1_200)], now=T0)
        assert len(await backend.job_claim(per_key("e1", 1, concurrency_per_key=1))) == 1  # busy is held now
        await backend.job_insert_many([keyed("x"), keyed("y"), keyed("x")], now=T0)
        got = await backend.job_claim(per_key("e2", 10, concurrency_per_key=1))
        assert sorted(j.concurrency_key or "" for j in got) == ["x", "y"]

    async def test_past_a_backlog_keys_take_turns(self, backend: Backend) -> None:
        """Key by key, each walk goes on from where the last stopped, then round again."""
        await backend.job_insert_many([keyed("busy") for _ in range(1_100)], now=T0)
        assert len(await backend.job_claim(per_key("e1", 1, concurrency_per_key=1))) == 1
        await backend.job_insert_many([keyed(k) for k in "aabbccdd"], now=T0)

        async def take(limit: int) -> list[str]:
            got = await backend.job_claim(per_key("e1", limit, concurrency_per_key=1))
            await backend.job_start_many([JobStart(j.id, j.claim_token or "") for j in got], now=T0)
            assert len(await finish(backend, [outcome(j, JobState.COMPLETED) for j in got])) == len(got)
            return sorted(j.concurrency_key or "" for j in got)

        assert await take(2) == ["a", "b"]
        assert await take(2) == ["c", "d"]  # a and b are free again, but it is c's and d's turn
        assert await take(10) == ["a", "b", "c", "d"]  # round again from the first key

    async def test_the_walk_passes_delayed_and_full_keys_page_by_page(self, backend: Backend) -> None:
        """Behind a backlog: 300 full keys with a job still due, 300 keys whose jobs are not due
        yet, then one free key. The walk passes keys with nothing due inside its steps, and
        goes on from where its steps ran out; a claim that stops first says it is unfinished."""
        await backend.job_insert_many([keyed("busy") for _ in range(1_100)], now=T0)
        await backend.job_insert_many([keyed(f"k{n:03}") for n in range(300)], now=T0)
        first = await backend.job_claim(per_key("e1", 400, concurrency_per_key=1))
        assert len(first) == 301  # busy and the 300 keys: all held now
        await backend.job_insert_many([keyed(f"k{n:03}") for n in range(300)], now=T0)
        later = T0 + timedelta(hours=1)
        await backend.job_insert_many([dataclass_replace(keyed(f"later{n:03}"), run_at=later) for n in range(300)],
                                      now=T0)
        await backend.job_insert_many([keyed("zfree")], now=T0)
        claims = [per_key("e2", 5, concurrency_per_key=1) for _ in range(4)]
        got: list[JobRecord] = []
        for c in claims:
            got += await backend.job_claim(c)
            if got:
                break
            assert c.unfinished == {"api"}, "a claim that stopped early must say so"
        assert [j.concurrency_key for j in got] == ["zfree"]

    async def test_a_key_picked_on_an_earlier_page_is_counted_once(self, backend: Backend) -> None:
        await backend.job_insert_many([keyed("b")] + [keyed("a") for _ in range(19)] + [keyed("b")], now=T0)
        got = await backend.job_claim(per_key("e1", 10, concurrency_per_key=2))
        assert sorted(j.concurrency_key or "" for j in got) == ["a", "a", "b", "b"]

    async def test_full_key_windows_do_not_hide_a_free_key(self, backend: Backend) -> None:
        """A hundred keys whose windows are full, each with a job still due, ahead of a key
        with room: the claim takes the free key's job."""
        limit = (1, 60.0)
        await backend.job_insert_many([keyed(f"k{n:03}") for n in range(100)], now=T0)
        assert len(await backend.job_claim(per_key("e1", 100, rate_limit_per_key=limit))) == 100
        await backend.job_insert_many([keyed(f"k{n:03}") for n in range(100)] + [keyed("free")], now=T0)
        later = per_key("e1", 5, at=T0 + timedelta(seconds=1), rate_limit_per_key=limit)
        assert [j.concurrency_key for j in await backend.job_claim(later)] == ["free"]
        assert later.rate_waits == {"api": pytest.approx(59.0)}

    async def test_concurrency_per_key_above_one_and_with_a_global_cap(self, backend: Backend) -> None:
        await backend.job_insert_many([keyed(k) for k in "aaabbbccc"], now=T0)
        got = await backend.job_claim(per_key("e1", 10, concurrency_per_key=2))
        assert sorted(j.concurrency_key or "" for j in got) == ["a", "a", "b", "b", "c", "c"]
        await backend.job_insert_many([keyed(k) for k in "ddeeff"], now=T0)
        capped = await backend.job_claim(per_key("e2", 10, concurrency_per_key=2, global_limit=8))
        assert sorted(j.concurrency_key or "" for j in capped) == ["d", "d"]  # the cap leaves 2

    async def test_claim_respects_rate_limit_per_key(self, backend: Backend) -> None:
        """Each key gets its own window; the picks start at once; the claim says when the
        first key's window opens."""
        await backend.job_insert_many([keyed(k) for k in "aaaaabbbbb"], now=T0)
        limit = (2, 10.0)
        first = per_key("e1", rate_limit_per_key=limit)
        got = await backend.job_claim(first)
        assert sorted(j.concurrency_key or "" for j in got) == ["a", "a", "b", "b"]
        assert {(j.state, j.attempt) for j in got} == {(JobState.RUNNING, 1)}
        assert first.rate_waits == {"api": pytest.approx(10.0)}
        later = per_key("e2", at=T0 + timedelta(seconds=4), rate_limit_per_key=limit)
        assert await backend.job_claim(later) == []
        assert later.rate_waits == {"api": pytest.approx(6.0)}
        again = await backend.job_claim(per_key("e1", at=T0 + timedelta(seconds=10, milliseconds=1),
                                                rate_limit_per_key=limit))
        assert sorted(j.concurrency_key or "" for j in again) == ["a", "a", "b", "b"]

    async def test_per_key_limits_with_a_queue_rate_limit(self, backend: Backend) -> None:
        await backend.job_insert_many([keyed(k) for k in "abcdefgh"], now=T0)
        got = await backend.job_claim(per_key("e1", concurrency_per_key=1, rate_limit=(3, 10.0)))
        assert len(got) == 3 and {j.state for j in got} == {JobState.RUNNING}
        window_full = per_key("e2", at=T0 + timedelta(seconds=1), concurrency_per_key=1, rate_limit=(3, 10.0))
        assert await backend.job_claim(window_full) == []
        assert window_full.rate_waits == {"api": pytest.approx(9.0)}

    async def test_keyed_claims_need_a_fresh_heartbeat(self, backend: Backend) -> None:
        await backend.engine_register(registration("w1", "a"), stale_after=30, takeover_incarnation=None, now=T0)
        await backend.job_insert_many([keyed("a")], now=T0)
        stale = JobClaim(engine_id="w1", demands=[QueueDemand("api", 5, concurrency_per_key=1)],
                         now=T0 + timedelta(seconds=60), incarnation="a", fresh_within=10)
        assert await backend.job_claim(stale) == []
        fresh = JobClaim(engine_id="w1", demands=[QueueDemand("api", 5, concurrency_per_key=1)],
                         now=T0 + timedelta(seconds=5), incarnation="a", fresh_within=10)
        assert len(await backend.job_claim(fresh)) == 1

    async def test_concurrent_keyed_claims_never_exceed_a_key(self, backend: Backend, second_backend: Backend) -> None:
        await backend.job_insert_many([keyed(f"k{i % 7}") for i in range(140)], now=T0)
        rounds = [(backend if n % 2 else second_backend).job_claim(per_key(f"e{n}", 5, concurrency_per_key=2))
                  for n in range(12)]
        got = [job for batch in await asyncio.gather(*rounds) for job in batch]
        per = {key: sum(1 for j in got if j.concurrency_key == key) for key in {j.concurrency_key for j in got}}
        assert len({j.id for j in got}) == len(got) == 14 and set(per.values()) == {2}

    async def test_queue_upsert_stores_per_key_limits(self, backend: Backend) -> None:
        stored = await backend.queue_upsert(QueueChange(name="api", concurrency_per_key=2,
                                                        rate_limit_per_key=(5, 1.5)), now=T0)
        assert (stored.concurrency_per_key, stored.rate_limit_per_key) == (2, (5, 1.5))
        kept = await backend.queue_upsert(QueueChange(name="api", priority=3), now=T0)
        assert (kept.concurrency_per_key, kept.rate_limit_per_key) == (2, (5, 1.5))
        cleared = await backend.queue_upsert(QueueChange(name="api", clear_concurrency_per_key=True,
                                                         clear_rate_limit_per_key=True), now=T0)
        assert (cleared.concurrency_per_key, cleared.rate_limit_per_key) == (None, None)

    async def test_key_windows_go_with_their_limit(self, backend: Backend) -> None:
        await backend.queue_upsert(QueueChange(name="api", rate_limit_per_key=(1, 60.0)), now=T0)
        await backend.job_insert_many([keyed("a"), keyed("a")], now=T0)
        assert len(await backend.job_claim(per_key("e1", rate_limit_per_key=(1, 60.0)))) == 1
        await backend.queue_upsert(QueueChange(name="api", clear_rate_limit_per_key=True), now=T0)
        await backend.queue_upsert(QueueChange(name="api", rate_limit_per_key=(1, 60.0)), now=T0)
        assert len(await backend.job_claim(per_key("e1", at=T0 + timedelta(seconds=1),
                                                   rate_limit_per_key=(1, 60.0)))) == 1
        # Pruning drops windows nothing counts any more, and keeps those that still count.
        await backend.job_prune(limit=100, now=T0 + timedelta(seconds=30))
        await backend.job_insert_many([keyed("a")], now=T0)
        assert await backend.job_claim(per_key("e1", at=T0 + timedelta(seconds=31), rate_limit_per_key=(1, 60.0))) == []

    async def test_concurrent_claims_never_share_a_job(self, backend: Backend, second_backend: Backend) -> None:
        await backend.job_insert_many([insert() for _ in range(200)], now=T0)
        rounds = [backend.job_claim(claim("e1", ("default", 7))) for _ in range(20)]
        rounds += [second_backend.job_claim(claim("e2", ("default", 7))) for _ in range(20)]
        results = await asyncio.gather(*rounds)
        ids = [r.id for batch in results for r in batch]
        assert len(ids) == len(set(ids)) == 200

    async def test_claims_need_a_fresh_heartbeat_of_this_incarnation(self, backend: Backend) -> None:
        await backend.job_insert_many([insert() for _ in range(3)], now=T0)

        def guarded(incarnation: str, at: datetime) -> JobClaim:
            return JobClaim(engine_id="w1", demands=[QueueDemand("default", 1)], now=at,
                            incarnation=incarnation, fresh_within=10)

        assert await backend.job_claim(guarded("a", T0)) == []  # not registered
        await backend.engine_register(registration("w1", "a"), stale_after=30, takeover_incarnation=None, now=T0)
        assert len(await backend.job_claim(guarded("a", T0 + timedelta(seconds=5)))) == 1
        assert await backend.job_claim(guarded("b", T0 + timedelta(seconds=5))) == []  # another incarnation
        assert await backend.job_claim(guarded("a", T0 + timedelta(seconds=11))) == []  # heartbeat too old
        await backend.engine_heartbeat(registration("w1", "a"), now=T0 + timedelta(seconds=11))
        assert len(await backend.job_claim(guarded("a", T0 + timedelta(seconds=12)))) == 1

    async def test_snoozed_jobs_are_claimable_when_due(self, backend: Backend) -> None:
        (job,) = await running(backend)
        await finish(backend, [outcome(job, JobState.SNOOZED, delay=10, give_back_attempt=True)], now=T0)
        snoozed = await backend.job_get(job.id)
        assert snoozed is not None and snoozed.state is JobState.SNOOZED and snoozed.attempt == 0
        assert await backend.job_claim(claim(at=T0 + timedelta(seconds=5))) == []
        assert [r.id for r in await backend.job_claim(claim(at=T0 + timedelta(seconds=10)))] == [job.id]

    # -- start and finish (fencing) ---------------------------------------------------------

    async def test_start_counts_the_attempt_and_is_fenced(self, backend: Backend) -> None:
        await backend.job_insert_many([insert(), insert()], now=T0)
        a, b = await backend.job_claim(claim())
        started = await backend.job_start_many([JobStart(a.id, a.claim_token or ""), JobStart(b.id, "wrong")],
                                               now=T0 + timedelta(seconds=1))
        assert [(s.id, s.attempt, s.attempted_at) for s in started] == [(a.id, 1, T0 + timedelta(seconds=1))]
        # Sent again (its reply was lost): the same attempt, not a second one.
        again = await backend.job_start_many([JobStart(a.id, a.claim_token or "")], now=T0 + timedelta(seconds=5))
        assert [(s.id, s.attempt, s.attempted_at) for s in again] == [(a.id, 1, T0 + timedelta(seconds=1))]
        current = await backend.job_get(a.id)
        assert current is not None and current.state is JobState.RUNNING and current.attempt == 1
        await finish(backend, [outcome(a, JobState.COMPLETED, result_json="1")], now=T0)
        assert await backend.job_start_many([JobStart(a.id, a.claim_token or "")], now=T0) == []

    async def test_one_write_starts_some_jobs_and_finishes_others(self, backend: Backend) -> None:
        done, deleted, late = await running(backend, insert(), insert(), insert())
        await backend.job_insert_many([insert(), insert()], now=T0)
        fresh, stolen = await backend.job_claim(claim())
        at = T0 + timedelta(seconds=2)
        written = await backend.job_write_many(
            [JobStart(fresh.id, fresh.claim_token or ""), JobStart(stolen.id, "wrong")],
            [outcome(done, JobState.COMPLETED, result_json="7"), outcome(deleted, JobState.COMPLETED, delete=True),
             outcome(late, JobState.COMPLETED, token="wrong")],
            retention=KEEP, now=at,
        )
        assert [(s.id, s.attempt, s.attempted_at) for s in written.started] == [(fresh.id, 1, at)]
        assert written.accepted == {done.id, deleted.id}
        current = [await backend.job_get(j.id) for j in (done, deleted, late, fresh, stolen)]
        assert [None if c is None else c.state for c in current] == [
            JobState.COMPLETED, None, JobState.RUNNING, JobState.RUNNING, JobState.CLAIMED]
        assert current[0] is not None and current[0].result == 7
        empty = await backend.job_write_many([], [], retention=KEEP, now=at)
        assert empty.started == [] and empty.accepted == set()

    async def test_finish_records_each_kind_of_outcome(self, backend: Backend) -> None:
        jobs = await running(backend, *[insert() for _ in range(5)])
        error = json.dumps({"name": "E", "message": "m", "traceback": "tb", "attempt": 1, "attempted_by": "e1",
                            "attempted_at": T0.isoformat()})
        done, retry, failed, canceled, deleted = jobs
        accepted = await finish(backend, [
            outcome(done, JobState.COMPLETED, result_json='{"ok": [1, 2]}'),
            outcome(retry, JobState.WAITING, error_json=error, delay=30),
            outcome(failed, JobState.FAILED, error_json=error),
            outcome(canceled, JobState.CANCELED),
            outcome(deleted, JobState.COMPLETED, delete=True),
        ], now=T0 + timedelta(seconds=2))
        assert accepted == {j.id for j in jobs}
        later = T0 + timedelta(seconds=2)
        d = await backend.job_get(done.id)
        assert d is not None and d.state is JobState.COMPLETED and d.result == {"ok": [1, 2]}
        assert d.completed_at == later
        r = await backend.job_get(retry.id)
        assert r is not None and r.state is JobState.WAITING and r.attempt == 1
        assert r.available_at == later + timedelta(seconds=30)
        assert r.errors[0]["name"] == "E" and r.errors[0]["attempted_at"] == T0 and r.errors[0]["traceback"] == "tb"
        f = await backend.job_get(failed.id)
        assert f is not None and f.state is JobState.FAILED and f.failed_at == later and len(f.errors) == 1
        c = await backend.job_get(canceled.id)
        assert c is not None and c.state is JobState.CANCELED and c.canceled_at == later
        assert await backend.job_get(deleted.id) is None

    async def test_late_outcomes_are_refused(self, backend: Backend) -> None:
        (job,) = await running(backend)
        wrong_token = JobOutcome(id=job.id, token="not-the-token", from_state=JobState.RUNNING,
                                 state=JobState.COMPLETED, result_json="1")
        wrong_state = outcome(job, JobState.COMPLETED, from_state=JobState.CLAIMED, result_json="1")
        late_delete = outcome(job, JobState.COMPLETED, delete=True, token="nope")
        assert await finish(backend, [wrong_token, wrong_state, late_delete], now=T0) == set()
        assert await finish(backend, [outcome(job, JobState.COMPLETED, result_json="2")], now=T0) == {job.id}
        assert await finish(backend, [outcome(job, JobState.COMPLETED, result_json="3")], now=T0) == set()
        final = await backend.job_get(job.id)
        assert final is not None and final.result == 2

    async def test_outcome_of_a_claim_that_never_started(self, backend: Backend) -> None:
        await backend.job_insert_many([insert()], now=T0)
        (job,) = await backend.job_claim(claim())
        deferred = outcome(job, JobState.WAITING, from_state=JobState.CLAIMED, delay=5)
        assert await finish(backend, [deferred], now=T0) == {job.id}
        current = await backend.job_get(job.id)
        assert current is not None and current.state is JobState.WAITING and current.attempt == 0
        assert current.available_at == T0 + timedelta(seconds=5)

    async def test_a_cancel_asked_for_during_the_attempt_wins_over_a_retry(self, backend: Backend) -> None:
        retried, snoozed, completed = await running(backend, insert(), insert(), insert())
        for job in (retried, snoozed, completed):
            await backend.job_cancel(retention=KEEP, job_id=job.id, now=T0)
        await finish(backend, [
            outcome(retried, JobState.WAITING, delay=5),
            outcome(snoozed, JobState.SNOOZED, delay=5, give_back_attempt=True),
            outcome(completed, JobState.COMPLETED, result_json="1"),
        ], now=T0 + timedelta(seconds=1))
        states = {j.id: (j.state, j.canceled_at) for j in await backend.job_list(JobFilter())}
        later = T0 + timedelta(seconds=1)
        assert states[retried.id] == (JobState.CANCELED, later) and states[snoozed.id] == (JobState.CANCELED, later)
        assert states[completed.id] == (JobState.COMPLETED, None)

    async def test_hand_back_gives_the_attempt_back(self, backend: Backend) -> None:
        (job,) = await running(backend)
        back = outcome(job, JobState.WAITING, delay=0, give_back_attempt=True)
        assert await finish(backend, [back], now=T0) == {job.id}
        current = await backend.job_get(job.id)
        assert current is not None and current.state is JobState.WAITING and current.attempt == 0

    async def test_a_hand_back_without_delay_keeps_its_place_in_line(self, backend: Backend) -> None:
        # delay=None keeps available_at (delay=0 would make it now): a job handed back at
        # shutdown, started or only claimed, runs before newer jobs of its priority.
        first, second = await held(backend, "default", "e1")
        await backend.job_insert_many([insert(name="newer")], now=T0 + timedelta(seconds=2))
        at = T0 + timedelta(seconds=3)
        accepted = await finish(backend, [
            outcome(first, JobState.WAITING, delay=None, give_back_attempt=True),
            outcome(second, JobState.WAITING, from_state=JobState.CLAIMED, delay=None),
        ], now=at)
        assert accepted == {first.id, second.id}
        for job in (first, second):
            current = await backend.job_get(job.id)
            assert current is not None and current.state is JobState.WAITING
            assert (current.attempt, current.available_at) == (0, T0)
        taken = await backend.job_claim(claim("e2", ("default", 1), at=at))
        taken += await backend.job_claim(claim("e2", ("default", 1), at=at))
        taken += await backend.job_claim(claim("e2", ("default", 1), at=at))
        assert [j.name for j in taken] == ["first", "second", "newer"]

    # -- cancel, retry, delete ---------------------------------------------------------------

    async def test_cancel_pending_running_and_finished_jobs(self, backend: Backend) -> None:
        (pending,) = await backend.job_insert_many([insert(queue="q2")], now=T0)
        (run,) = await running(backend)
        canceled = await backend.job_cancel(retention=KEEP, job_id=pending.id, now=T0)
        assert canceled is not None and canceled.state is JobState.CANCELED and canceled.canceled_at == T0
        flagged = await backend.job_cancel(retention=KEEP, job_id=run.id, now=T0)
        assert flagged is not None and flagged.state is JobState.RUNNING and flagged.cancel_requested
        assert await backend.job_claims_to_stop([JobStart(run.id, run.claim_token or "")]) == [
            ClaimToStop(run.id, run.claim_token or "", held=True)]
        again = await backend.job_cancel(retention=KEEP, job_id=pending.id, now=T0)
        assert again is not None and again.state is JobState.CANCELED
        assert await backend.job_cancel(retention=KEEP, job_id=999_999, now=T0) is None

    async def test_claims_to_stop_are_the_canceled_and_the_gone(self, backend: Backend) -> None:
        kept, canceled, deleted, rescued, stale = await running(backend, *[insert() for _ in range(5)])
        claims = [JobStart(r.id, r.claim_token or "") for r in (kept, canceled, deleted, rescued, stale)]
        await backend.job_cancel(retention=KEEP, job_id=canceled.id, now=T0)  # running: flagged
        await backend.job_finish_many([outcome(deleted, JobState.COMPLETED, delete=True)], retention=KEEP, now=T0)
        await backend.job_finish_many([outcome(rescued, JobState.WAITING, delay=0.0)], retention=KEEP, now=T0)
        await backend.job_finish_many([outcome(stale, JobState.WAITING, delay=0.0)], retention=KEEP, now=T0)
        (again,) = await backend.job_claim(claim("e2", ("default", 1)))  # claimed anew, another token
        assert again.id in (rescued.id, stale.id)
        claims.append(JobStart(kept.id, "not-its-token"))
        stop = sorted(await backend.job_claims_to_stop(claims), key=lambda c: (c.id, c.token))
        expected = [ClaimToStop(canceled.id, canceled.claim_token or "", held=True),
                    ClaimToStop(deleted.id, deleted.claim_token or "", held=False),
                    ClaimToStop(rescued.id, rescued.claim_token or "", held=False),
                    ClaimToStop(stale.id, stale.claim_token or "", held=False),
                    ClaimToStop(kept.id, "not-its-token", held=False)]
        assert stop == sorted(expected, key=lambda c: (c.id, c.token))
        assert await backend.job_claims_to_stop([JobStart(kept.id, kept.claim_token or "")]) == []
        assert await backend.job_claims_to_stop([]) == []

    async def test_held_jobs_are_listed_per_engine(self, backend: Backend) -> None:
        (run,) = await running(backend, insert(), engine="e1")
        await backend.job_insert_many([insert()], now=T0)
        (claimed,) = await backend.job_claim(claim("e1"))
        held = sorted(await backend.job_held("e1"), key=lambda h: h.id)
        assert [(h.id, h.token, h.state) for h in held] == [
            (run.id, run.claim_token, JobState.RUNNING), (claimed.id, claimed.claim_token, JobState.CLAIMED)]
        assert await backend.job_held("e2") == []

    async def test_cancel_of_a_claimed_job_fences_its_start(self, backend: Backend) -> None:
        await backend.job_insert_many([insert()], now=T0)
        (job,) = await backend.job_claim(claim())
        canceled = await backend.job_cancel(retention=KEEP, job_id=job.id, now=T0)
        assert canceled is not None and canceled.state is JobState.CANCELED
        assert await backend.job_start_many([JobStart(job.id, job.claim_token or "")], now=T0) == []

    async def test_retry_puts_a_finished_job_back(self, backend: Backend) -> None:
        (job,) = await running(backend, insert(max_attempts=1))
        await finish(backend, [outcome(job, JobState.FAILED)], now=T0)
        retried = await backend.job_retry(job.id, now=T0 + timedelta(seconds=9))
        assert retried is not None and retried.state is JobState.WAITING and retried.failed_at is None
        assert retried.available_at == T0 + timedelta(seconds=9) and retried.max_attempts == 2
        (pending,) = await backend.job_insert_many([insert()], now=T0)
        unchanged = await backend.job_retry(pending.id, now=T0)
        assert unchanged is not None and unchanged.state is JobState.WAITING
        assert await backend.job_retry(999_999, now=T0) is None

    async def test_snooze_puts_a_pending_job_aside(self, backend: Backend) -> None:
        (run,) = await running(backend)
        (done,) = await running(backend)
        await finish(backend, [outcome(done, JobState.COMPLETED, result_json="1")])
        (job,) = await backend.job_insert_many([insert()], now=T0)
        snoozed = await backend.job_snooze(job.id, delay=30, now=T0)
        assert snoozed is not None and snoozed.state is JobState.SNOOZED
        assert snoozed.available_at == T0 + timedelta(seconds=30) and snoozed.attempt == 0
        again = await backend.job_snooze(job.id, delay=5, now=T0 + timedelta(seconds=10))
        assert again is not None and again.state is JobState.SNOOZED
        assert again.available_at == T0 + timedelta(seconds=15)
        for other in (run, done):
            before = await backend.job_get(other.id)
            assert await backend.job_snooze(other.id, delay=30, now=T0) == before  # left alone
        assert await backend.job_snooze(999_999, delay=30, now=T0) is None
        assert await backend.job_claim(claim(at=T0 + timedelta(seconds=14))) == []
        assert [r.id for r in await backend.job_claim(claim(at=T0 + timedelta(seconds=15)))] == [job.id]

    async def test_delete_and_delete_where(self, backend: Backend) -> None:
        a, b, c = await backend.job_insert_many([insert(), insert(queue="x"), insert(queue="x")], now=T0)
        assert await backend.job_delete(a.id) and not await backend.job_delete(a.id)
        (held,) = await running(backend, insert())
        assert not await backend.job_delete(held.id)  # an engine holds it
        assert await backend.job_get(held.id) is not None
        assert await backend.job_delete_where([JobState.WAITING], ["x"]) == 2
        assert await backend.job_get(b.id) is None and await backend.job_get(c.id) is None

    # -- listing and counting ----------------------------------------------------------------

    async def test_list_filters_and_pages_newest_first(self, backend: Backend) -> None:
        records = await backend.job_insert_many(
            [insert(name="a"), insert(name="b", queue="q"), insert(name="a"), insert(name="c")], now=T0
        )
        ids = [r.id for r in records]
        assert [r.id for r in await backend.job_list(JobFilter())] == ids[::-1]
        assert [r.id for r in await backend.job_list(JobFilter(names=["a"]))] == [ids[2], ids[0]]
        assert [r.id for r in await backend.job_list(JobFilter(queues=["q"]))] == [ids[1]]
        assert [r.id for r in await backend.job_list(JobFilter(limit=2))] == [ids[3], ids[2]]
        assert [r.id for r in await backend.job_list(JobFilter(limit=2, before_id=ids[2]))] == [ids[1], ids[0]]
        assert await backend.job_list(JobFilter(states=[JobState.FAILED])) == []

    async def test_list_searches_values_inside_arguments_and_meta(self, backend: Backend) -> None:
        a, b, c, d = await backend.job_insert_many([
            insert(args=[42, "Alice@Example.com"], meta={"tags": ["vip", {"tenant": "acme"}]}),
            insert(kwargs={"note": 'say "hi" 50% off_'}, meta={}),
            insert(name="c", args=[1420], meta={"tenant": "Globex"}),
            insert(args=[True, None], kwargs={"acme_key": False}, meta={}),  # keys, booleans, nulls: not searched
        ], now=T0)

        async def found(text: str, **where: Any) -> list[int]:
            return [r.id for r in await backend.job_list(JobFilter(search=text, **where))]

        assert await found("alice@example") == [a.id]  # case ignored, a part of the value is enough
        assert await found("ACME") == [a.id]  # at any depth of meta
        assert await found("vip") == [a.id]
        assert await found("42") == [c.id, a.id]  # numbers as text: 1420 holds 42 too
        assert await found('"hi" 50%') == [b.id]  # quotes and LIKE wildcards are plain text
        assert await found("%") == [b.id] and await found("_") == [b.id]
        assert await found("true") == [] and await found("acme_key") == [] and await found("null") == []
        assert await found("globex", names=["c"]) == [c.id]
        assert await found("globex", names=["job"]) == []
        assert await found("4", limit=1) == [c.id]
        assert await found("4", before_id=c.id) == [a.id]
        assert await found("1") == [c.id] and d.id not in await found("e")

    async def test_counts_per_queue_and_state(self, backend: Backend) -> None:
        await backend.job_insert_many([insert(), insert(), insert(queue="q", delay=60)], now=T0)
        counts = await backend.job_count(now=T0)
        assert counts == {("default", JobState.WAITING): 2, ("q", JobState.WAITING): 1}
        due = await backend.job_count(now=T0, due_only=True)
        assert due == {("default", JobState.WAITING): 2}

    async def test_activity_counts_finished_jobs_per_queue_and_bucket(self, backend: Backend) -> None:
        jobs = await running(backend, *[insert() for _ in range(3)])
        await finish(backend, [outcome(jobs[0], JobState.COMPLETED, result_json="1"),
                               outcome(jobs[1], JobState.FAILED)], now=T0 + timedelta(seconds=30))
        await finish(backend, [outcome(jobs[2], JobState.COMPLETED, result_json="1")], now=T0 + timedelta(seconds=90))
        buckets = await backend.job_activity(since=T0, bucket=60)
        assert [(b.queue, b.start, b.completed, b.failed) for b in buckets] == [
            ("default", T0, 1, 1), ("default", T0 + timedelta(seconds=60), 1, 0)]
        assert await backend.job_activity(since=T0 + timedelta(seconds=100), bucket=60) == []

    # -- rescue and prune --------------------------------------------------------------------

    async def test_rescue_returns_jobs_of_silent_engines(self, backend: Backend) -> None:
        await backend.engine_register(registration("dead"), stale_after=10, takeover_incarnation=None, now=T0)
        await backend.engine_register(registration("alive"), stale_after=10, takeover_incarnation=None, now=T0)
        await backend.job_insert_many([insert(max_attempts=1), insert(), insert()], now=T0)
        last, started, claimed_only = await backend.job_claim(claim("dead"))
        await backend.job_start_many([JobStart(last.id, last.claim_token or ""),
                                      JobStart(started.id, started.claim_token or "")], now=T0)
        (other,) = await running(backend, insert(), engine="alive")
        later = T0 + timedelta(seconds=30)
        await backend.engine_heartbeat(registration("alive"), now=later)
        result = await backend.job_rescue(retention=KEEP, stale_after=10, now=later)
        assert result.dead_engines == ["dead"]
        assert sorted(j.id for j in result.retried) == sorted([started.id, claimed_only.id])
        assert [j.id for j in result.failed] == [last.id]
        s = await backend.job_get(started.id)
        assert s is not None and s.state is JobState.WAITING and s.attempt == 1 and s.available_at == T0
        assert s.errors[-1]["name"] == "EngineLost" and s.errors[-1]["attempted_by"] == "dead"
        c = await backend.job_get(claimed_only.id)
        assert c is not None and c.state is JobState.WAITING and c.attempt == 0 and c.errors == []
        f = await backend.job_get(last.id)
        assert f is not None and f.state is JobState.FAILED and f.failed_at == later
        o = await backend.job_get(other.id)
        assert o is not None and o.state is JobState.RUNNING
        late = outcome(started, JobState.COMPLETED, result_json="1")
        assert await finish(backend, [late], now=later) == set()  # fenced
        again = await backend.job_rescue(retention=KEEP, stale_after=10, now=later)
        assert again.retried == [] and again.failed == [] and again.dead_engines == []

    async def test_rescue_of_unregistered_engines_and_by_id(self, backend: Backend) -> None:
        (orphan,) = await running(backend, insert(), engine="never-registered")
        result = await backend.job_rescue(retention=KEEP, stale_after=10, now=T0)
        assert [j.id for j in result.retried] == [orphan.id]
        await backend.engine_register(registration("me"), stale_after=10, takeover_incarnation=None, now=T0)
        mine = await running(backend, insert(), engine="me")  # the orphan again, and a new one
        assert len(mine) == 2
        assert (await backend.job_rescue(retention=KEEP, stale_after=10, now=T0)).retried == []
        by_id = await backend.job_rescue(retention=KEEP, engine_id="me", now=T0)
        assert sorted(j.id for j in by_id.retried) == sorted(j.id for j in mine)

    async def test_rescued_jobs_run_before_newer_jobs_of_their_priority(self, backend: Backend) -> None:
        # Joystick's rule: a job taken back from a dead engine, or by an engine restarting
        # under its id, keeps its available_at, so it keeps its place in line.
        await backend.engine_register(registration("me"), stale_after=10, takeover_incarnation=None, now=T0)
        for engine, how in RESCUES.items():
            queue = f"q-{engine}"
            first, second = await held(backend, queue, engine)
            await backend.job_insert_many([insert(queue, "newer"), insert(queue, "urgent", priority=1)],
                                          now=T0 + timedelta(seconds=2))
            at = T0 + timedelta(seconds=3)
            rescued = await backend.job_rescue(retention=KEEP, now=at, **how)
            assert sorted(j.id for j in rescued.retried) == sorted([first.id, second.id]), engine
            assert [j.available_at for j in rescued.retried] == [T0, T0], engine
            # Claimed a slot or two at a time, as a busy queue is: priority first, then age.
            taken = await backend.job_claim(claim("e2", (queue, 2), at=at))
            taken += await backend.job_claim(claim("e2", (queue, 1), at=at))
            taken += await backend.job_claim(claim("e2", (queue, 1), at=at))
            assert [j.name for j in taken] == ["urgent", "first", "second", "newer"], engine

    async def test_a_dead_engines_keyed_jobs_hold_their_keys_until_rescued(self, backend: Backend) -> None:
        """An engine dies holding a key's job: the key stays held (no second job of it runs
        beside a job that may still be running), and its rescue frees it; the rescued job
        runs again, after the rescue, before the key's later job."""
        for engine, how in RESCUES.items():
            first, later = await backend.job_insert_many([keyed("tenant"), keyed("tenant")], now=T0)
            (held,) = await backend.job_claim(per_key(engine, 5, concurrency_per_key=1))
            assert held.id == first.id
            await backend.job_start_many([JobStart(held.id, held.claim_token or "")], now=T0)
            assert await backend.job_claim(per_key("other", 5, concurrency_per_key=1)) == []  # the key is held
            rescued = await backend.job_rescue(retention=KEEP, now=T0 + timedelta(seconds=60), **how)
            assert [j.id for j in rescued.retried] == [first.id]
            again = await backend.job_claim(per_key("other", 5, at=T0 + timedelta(seconds=60), concurrency_per_key=1))
            assert [(j.id, j.errors[-1]["name"]) for j in again] == [(first.id, "EngineLost")]
            await finish(backend, [outcome(again[0], JobState.COMPLETED, from_state=JobState.CLAIMED)],
                         now=T0 + timedelta(seconds=61))
            (last,) = await backend.job_claim(per_key("other", 5, at=T0 + timedelta(seconds=61), concurrency_per_key=1))
            assert last.id == later.id
            await finish(backend, [outcome(last, JobState.COMPLETED, from_state=JobState.CLAIMED)],
                         now=T0 + timedelta(seconds=62))

    async def test_rescue_wakes_listeners_of_the_queues_given_jobs_back(
        self, backend: Backend, second_backend: Backend
    ) -> None:
        if not second_backend.capabilities.supports_notify:
            pytest.skip("the backend cannot wake other engines")
        await backend.engine_register(registration("me"), stale_after=10, takeover_incarnation=None, now=T0)
        await held(backend, "q-gone", "gone")
        await held(backend, "q-me", "me")
        inbox = Notifications()
        listener = await second_backend.listen(inbox)
        try:
            # A backend names the queue (enqueued:<queue>) or can only tell that something
            # changed: an enqueue, which must wake listeners, shows which.
            await backend.job_insert_many([insert("q-probe")], now=T0)
            named = await inbox.wait_for() != NOTIFY_CHANGED
            for engine, how in RESCUES.items():
                inbox.payloads.clear()
                rescued = await backend.job_rescue(retention=KEEP, now=T0 + timedelta(seconds=3), **how)
                assert len(rescued.retried) == 2, engine
                await inbox.wait_for(f"{NOTIFY_ENQUEUED}:q-{engine}" if named else NOTIFY_CHANGED)
        finally:
            await listener.close()

    async def test_rescue_cancels_jobs_whose_cancel_was_requested(self, backend: Backend) -> None:
        (job,) = await running(backend, insert(), engine="gone")
        await backend.job_cancel(retention=KEEP, job_id=job.id, now=T0)
        result = await backend.job_rescue(retention=KEEP, stale_after=10, now=T0)
        assert [j.state for j in result.canceled] == [JobState.CANCELED] and result.failed == []

    async def test_prune_deletes_finished_jobs_past_their_retention(self, backend: Backend) -> None:
        jobs = await running(backend, *[insert() for _ in range(5)])
        await backend.job_insert_many([insert(queue="q"), insert(queue="q")], now=T0)
        in_q = await backend.job_claim(claim("e1", ("q", 10)))
        await backend.job_start_many([JobStart(j.id, j.claim_token or "") for j in in_q], now=T0)
        jobs += in_q
        (own,) = await running(backend, replace(insert(), keep={"completed": 5}))
        await backend.queue_upsert(QueueChange(name="q", retention={"completed": 3600, "failed": 10}), now=T0)
        await finish(backend, [
            *(outcome(j, JobState.COMPLETED, result_json="1") for j in jobs[:3]),
            outcome(jobs[3], JobState.FAILED), outcome(jobs[4], JobState.CANCELED),
            outcome(jobs[5], JobState.COMPLETED, result_json="1"), outcome(jobs[6], JobState.FAILED),
            outcome(own, JobState.COMPLETED, result_json="1"),
        ], now=T0)
        assert await backend.job_prune(limit=10, now=T0 + timedelta(seconds=4)) == 0
        assert await backend.job_prune(limit=10, now=T0 + timedelta(seconds=6)) == 1  # the job's own 5 s
        assert await backend.job_prune(limit=10, now=T0 + timedelta(seconds=30)) == 1  # queue q: failed after 10 s
        assert await backend.job_prune(limit=2, now=T0 + timedelta(seconds=61)) == 2  # engine: 60 s, in batches
        assert await backend.job_prune(limit=10, now=T0 + timedelta(seconds=61)) == 2
        left = {(j.queue, j.state) for j in await backend.job_list(JobFilter())}
        assert left == {("default", JobState.FAILED), ("q", JobState.COMPLETED)}  # failed: kept; q: an hour
        (kept,) = [q for q in await backend.queue_list() if q.name == "q"]
        assert kept.retention == {"completed": 3600.0, "failed": 10.0}
        cleared = await backend.queue_upsert(QueueChange(name="q", clear_retention=True), now=T0)
        assert cleared.retention == {}

    # -- queues -----------------------------------------------------------------------------

    async def test_queue_upsert_changes_only_what_is_given(self, backend: Backend) -> None:
        created = await backend.queue_upsert(QueueChange(name="mail", priority=5), now=T0)
        assert (created.concurrency, created.priority, created.paused) == (10, 5, False)
        paused = await backend.queue_upsert(QueueChange(name="mail", paused=True), now=T0)
        assert (paused.concurrency, paused.priority, paused.paused) == (10, 5, True)
        changed = await backend.queue_upsert(QueueChange(name="mail", concurrency=3, global_concurrency=7), now=T0)
        assert (changed.concurrency, changed.priority, changed.paused, changed.global_concurrency) == (3, 5, True, 7)
        cleared = await backend.queue_upsert(QueueChange(name="mail", clear_global_concurrency=True), now=T0)
        assert cleared.global_concurrency is None and cleared.rate_limit is None
        limited = await backend.queue_upsert(QueueChange(name="mail", rate_limit=(20, 1.5)), now=T0)
        assert limited.rate_limit == (20, 1.5) and limited.concurrency == 3
        kept = await backend.queue_upsert(QueueChange(name="mail", priority=6), now=T0)
        assert kept.rate_limit == (20, 1.5) and [q.rate_limit for q in await backend.queue_list()] == [(20, 1.5)]
        unlimited = await backend.queue_upsert(QueueChange(name="mail", clear_rate_limit=True), now=T0)
        assert unlimited.rate_limit is None
        await backend.queue_upsert(QueueChange(name="alpha", priority=1), now=T0)
        assert [q.name for q in await backend.queue_list()] == ["alpha", "mail"]

    async def test_queue_running_counts(self, backend: Backend) -> None:
        await running(backend, insert(), insert())
        await backend.job_insert_many([insert()], now=T0)
        assert dict(await backend.queue_running_counts(["default", "none"])) == {"default": 2}

    async def test_queue_delete_only_when_no_job_is_stored(self, backend: Backend) -> None:
        await backend.queue_upsert(QueueChange(name="empty", paused=True), now=T0)
        (job,) = await backend.job_insert_many([insert(queue="busy")], now=T0)
        await held(backend, "held", "e1")
        assert not await backend.queue_delete("busy")  # a waiting job
        assert not await backend.queue_delete("held")  # a running and a claimed job
        assert not await backend.queue_delete("never")
        assert await backend.queue_delete("empty")
        assert not await backend.queue_delete("empty")  # already gone
        assert [q.name for q in await backend.queue_list()] == ["busy", "held"]
        assert await backend.job_delete(job.id)
        assert await backend.queue_delete("busy")
        assert [q.name for q in await backend.queue_list()] == ["held"]

    # -- engines ----------------------------------------------------------------------------

    async def test_engine_registration_refuses_a_live_id(self, backend: Backend) -> None:
        assert await backend.engine_register(registration("w1", "a"), stale_after=10, takeover_incarnation=None,
                                             now=T0)
        assert not await backend.engine_register(registration("w1", "b"), stale_after=10, takeover_incarnation=None,
                                                 now=T0 + timedelta(seconds=5))
        assert not await backend.engine_register(registration("w1", "b"), stale_after=10, takeover_incarnation="a",
                                                 takeover_quiet=6, now=T0 + timedelta(seconds=5))  # "a" beat 5 s ago
        assert await backend.engine_register(registration("w1", "b"), stale_after=10, takeover_incarnation="a",
                                             takeover_quiet=4, now=T0 + timedelta(seconds=5))
        assert await backend.engine_register(registration("w1", "c"), stale_after=10, takeover_incarnation=None,
                                             now=T0 + timedelta(seconds=30))
        record = await backend.engine_get("w1")
        assert record is not None and record.incarnation == "c" and record.pid == 4242 and record.host == "host-a"
        assert [e.id for e in await backend.engine_list()] == ["w1"]

    async def test_heartbeat_beats_revives_and_loses(self, backend: Backend) -> None:
        me = registration("w1", "a")
        await backend.engine_register(me, stale_after=10, takeover_incarnation=None, now=T0)
        assert await backend.engine_heartbeat(me, now=T0 + timedelta(seconds=1)) is Heartbeat.BEAT
        record = await backend.engine_get("w1")
        assert record is not None and record.heartbeat_at == T0 + timedelta(seconds=1)
        await backend.job_rescue(retention=KEEP, stale_after=10, now=T0 + timedelta(seconds=60))  # declares w1 dead
        assert await backend.engine_get("w1") is None
        assert await backend.engine_heartbeat(me, now=T0 + timedelta(seconds=61)) is Heartbeat.REVIVED
        await backend.engine_register(registration("w1", "b"), stale_after=10, takeover_incarnation="a",
                                      now=T0 + timedelta(seconds=62))
        assert await backend.engine_heartbeat(me, now=T0 + timedelta(seconds=63)) is Heartbeat.LOST
        await backend.engine_unregister("w1", "a")  # not ours any more: nothing happens
        assert await backend.engine_get("w1") is not None
        await backend.engine_unregister("w1", "b")
        assert await backend.engine_get("w1") is None
