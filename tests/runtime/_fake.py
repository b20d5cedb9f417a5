"""An in-memory backend for the runtime's unit tests: only the statements the runtime
components call, with the same rules as the SQL ones (claim order, fencing, rescue), on
the test's ``FrozenClock``.

Not a database: the rest of the suite runs on real SQLite and PostgreSQL (and the
conformance suite holds the real backends to these rules). This one exists so that each
component's own logic can be tested fast, and so that tests can make a statement fail,
hang, or be watched:

    fake.fail("job_claim", BackendUnavailableError("down"), times=2)
    release = fake.block("job_write_many")     # calls wait until release.set()
    await fake.wait_calls("job_claim", 3)      # every call is recorded in fake.calls
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from aiojobs_engine import FrozenClock
from aiojobs_engine._backends._protocol import (
    BackendCapabilities,
    ClaimToStop,
    EngineRegistration,
    HeldJob,
    JobClaim,
    JobInsert,
    JobOutcome,
    JobStart,
    RescueResult,
    Retention,
    StartedJob,
    WriteResult,
)
from aiojobs_engine._records import CronRecord, EngineRecord, JobRecord, JobState, QueueRecord

HELD = (JobState.CLAIMED, JobState.RUNNING)


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    args: dict[str, Any]
    at: float  # the loop's time when it was called


@dataclass(slots=True)
class _Fault:
    error: Exception
    times: int | None  # None: every call
    when: Callable[[Call], bool] | None


class FakeBackend:
    def __init__(self, clock: FrozenClock, *, shared: bool = False) -> None:
        self.clock = clock
        self.capabilities = BackendCapabilities(dialect="fake", supports_notify=False, shared=shared,
                                                transactional_enqueue=False)
        self.jobs: dict[int, JobRecord] = {}
        self.queues: dict[str, QueueRecord] = {}
        self.engines: dict[str, EngineRecord] = {}
        self.schedules: dict[str, CronRecord] = {}
        self.calls: list[Call] = []
        self._unique_states: dict[int, Sequence[JobState]] = {}
        self._ids = itertools.count(1)
        self._tokens = itertools.count(1)
        self._faults: dict[str, list[_Fault]] = {}
        self._blocks: dict[str, asyncio.Event] = {}
        self._called = asyncio.Event()

    # -- knobs ------------------------------------------------------------------------------

    def fail(self, method: str, error: Exception, *, times: int | None = 1,
             when: Callable[[Call], bool] | None = None) -> None:
        """The next ``times`` calls of ``method`` (those ``when`` picks) raise ``error``."""
        self._faults.setdefault(method, []).append(_Fault(error, times, when))

    def block(self, method: str) -> asyncio.Event:
        """Calls of ``method`` wait (recorded, not done) until the returned event is set."""
        return self._blocks.setdefault(method, asyncio.Event())

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    async def wait_calls(self, method: str, count: int, timeout: float = 2.0) -> list[Call]:
        """Wait until ``method`` was called ``count`` times; those calls."""
        async with asyncio.timeout(timeout):
            while len(calls := self.calls_to(method)) < count:
                self._called.clear()
                await self._called.wait()
        return calls

    def note(self, what: str, **args: Any) -> Call:
        """Record something a test's stand-in did (a callback the runtime called) on the same
        timeline as the backend's calls, to check the order of both."""
        call = Call(what, args, asyncio.get_running_loop().time())
        self.calls.append(call)
        self._called.set()
        return call

    async def _enter(self, method: str, **args: Any) -> None:
        call = self.note(method, **args)
        gate = self._blocks.get(method)
        if gate is not None:
            await gate.wait()
        for fault in self._faults.get(method, []):
            if fault.times != 0 and (fault.when is None or fault.when(call)):
                if fault.times is not None:
                    fault.times -= 1
                raise fault.error

    # -- seeding ----------------------------------------------------------------------------

    def add_queue(self, name: str, *, concurrency: int = 10, priority: int = 50, paused: bool = False,
                  global_concurrency: int | None = None) -> QueueRecord:
        self.queues[name] = QueueRecord(name=name, concurrency=concurrency, priority=priority, paused=paused,
                                        global_concurrency=global_concurrency)
        return self.queues[name]

    def seed(self, name: str = "work", *, queue: str = "q", count: int = 1, state: JobState = JobState.WAITING,
             priority: int = 50, attempt: int = 0, max_attempts: int = 5, timeout: float | None = None,
             available_in: float = 0.0, claimed_by: str | None = None, args: Sequence[Any] = ()) -> list[JobRecord]:
        """Store ``count`` jobs (a claimed or running one gets a token), oldest first."""
        now = self.clock.now()
        seeded = []
        for _ in range(count):
            job_id = next(self._ids)
            self.jobs[job_id] = JobRecord(
                id=job_id, queue=queue, name=name, args=list(args), state=state, priority=priority, attempt=attempt,
                max_attempts=max_attempts, timeout=timeout, inserted_at=now,
                available_at=now + timedelta(seconds=available_in), claimed_by=claimed_by,
                claim_token=self._token() if state in HELD else None,
                attempted_at=now if state is JobState.RUNNING else None)
            seeded.append(self.job(job_id))
        return seeded

    def job(self, job_id: int) -> JobRecord:
        return replace(self.jobs[job_id])

    def take_away(self, job_id: int) -> None:
        """As another engine's rescue would: the claim is gone, the job waits again."""
        self._set(job_id, state=JobState.WAITING, claim_token=None, claimed_by=None)

    def request_cancel(self, job_id: int) -> None:
        self._set(job_id, cancel_requested=True)

    def outcomes_for(self, job_id: int) -> list[JobOutcome]:
        """Every outcome of ``job_id`` the runtime asked to write, accepted or not."""
        return [o for call in self.calls if call.method in ("job_write_many", "job_finish_many")
                for o in call.args["outcomes"] if o.id == job_id]

    def _token(self) -> str:
        return f"token-{next(self._tokens)}"

    def _set(self, job_id: int, **changes: Any) -> JobRecord:
        self.jobs[job_id] = replace(self.jobs[job_id], **changes)
        return self.job(job_id)

    def _now(self, now: datetime | None) -> datetime:
        return now or self.clock.now()

    # -- queues -------------------------------------------------------------------------------

    async def queue_list(self) -> list[QueueRecord]:
        await self._enter("queue_list")
        return sorted(self.queues.values(), key=lambda q: (q.priority, q.name))

    # -- claims, starts, outcomes -------------------------------------------------------------

    async def job_claim(self, claim: JobClaim) -> list[JobRecord]:
        await self._enter("job_claim", claim=claim)
        now = self._now(claim.now)
        if claim.incarnation is not None:
            engine = self.engines.get(claim.engine_id)
            fresh_since = now - timedelta(seconds=claim.fresh_within or 0.0)
            if engine is None or engine.incarnation != claim.incarnation or engine.heartbeat_at < fresh_since:
                return []
        claimed = []
        for demand in claim.demands:
            limit = demand.limit
            if demand.global_limit is not None:
                held = sum(1 for j in self.jobs.values() if j.queue == demand.queue and j.state in HELD)
                limit = min(limit, demand.global_limit - held)
            due = sorted((j for j in self.jobs.values()
                          if j.queue == demand.queue and j.state.is_pending and j.available_at <= now),
                         key=lambda j: (j.priority, j.available_at, j.id))
            for job in due[:max(0, limit)]:
                start = job.name in claim.start_now
                claimed.append(self._set(
                    job.id, state=JobState.RUNNING if start else JobState.CLAIMED, attempt=job.attempt + start,
                    attempted_at=now if start else job.attempted_at, claimed_by=claim.engine_id, claimed_at=now,
                    claim_token=self._token()))
        return claimed

    async def job_write_many(self, starts: Sequence[JobStart], outcomes: Sequence[JobOutcome], *,
                             retention: Retention, now: datetime | None = None) -> WriteResult:
        await self._enter("job_write_many", starts=list(starts), outcomes=list(outcomes))
        now = self._now(now)
        started = [s for s in map(lambda start: self._start(start, now), starts) if s is not None]
        return WriteResult(started=started, accepted={o.id for o in outcomes if self._finish(o, now)})

    async def job_finish_many(self, outcomes: Sequence[JobOutcome], *, retention: Retention,
                              now: datetime | None = None) -> set[int]:
        await self._enter("job_finish_many", outcomes=list(outcomes))
        now = self._now(now)
        return {o.id for o in outcomes if self._finish(o, now)}

    def _start(self, start: JobStart, now: datetime) -> StartedJob | None:
        job = self.jobs.get(start.id)
        if job is None or job.claim_token != start.token or job.state not in HELD:
            return None
        if job.state is JobState.CLAIMED:  # a start sent again finds it running: counted once
            job = self._set(job.id, state=JobState.RUNNING, attempt=job.attempt + 1, attempted_at=now)
        assert job.attempted_at is not None
        return StartedJob(job.id, job.attempt, job.attempted_at)

    def _finish(self, o: JobOutcome, now: datetime) -> bool:
        job = self.jobs.get(o.id)
        if job is None or job.claim_token != o.token or job.state is not o.from_state:
            return False  # fenced: the claim was taken away, or the job moved on
        if o.delete:
            del self.jobs[o.id]
            return True
        state = JobState.CANCELED if job.cancel_requested and o.state.is_pending else o.state
        self._set(
            o.id, state=state, claim_token=None, cancel_requested=False,
            attempt=job.attempt - o.give_back_attempt,
            available_at=job.available_at if o.delay is None else now + timedelta(seconds=o.delay),
            errors=job.errors if o.error_json is None else [*job.errors, json.loads(o.error_json)],
            result=json.loads(o.result_json) if state is JobState.COMPLETED and o.result_json else job.result,
            completed_at=now if state is JobState.COMPLETED else job.completed_at,
            failed_at=now if state is JobState.FAILED else job.failed_at,
            canceled_at=now if state is JobState.CANCELED else job.canceled_at)
        return True

    async def job_claims_to_stop(self, claims: Sequence[JobStart]) -> list[ClaimToStop]:
        await self._enter("job_claims_to_stop", claims=list(claims))
        stop = []
        for claim in claims:
            job = self.jobs.get(claim.id)
            held = job is not None and job.claim_token == claim.token and job.state in HELD
            if not held or (job is not None and job.cancel_requested):
                stop.append(ClaimToStop(claim.id, claim.token, held))
        return stop

    async def job_held(self, engine_id: str) -> list[HeldJob]:
        await self._enter("job_held", engine_id=engine_id)
        return [HeldJob(j.id, j.claim_token or "", j.state) for j in self.jobs.values()
                if j.claimed_by == engine_id and j.state in HELD]

    async def job_rescue(self, *, retention: Retention, stale_after: float | None = None,
                         engine_id: str | None = None, now: datetime | None = None) -> RescueResult:
        await self._enter("job_rescue", stale_after=stale_after, engine_id=engine_id)
        now = self._now(now)
        dead = []
        if stale_after is not None:
            dead = [e.id for e in self.engines.values() if e.heartbeat_at < now - timedelta(seconds=stale_after)]
            for name in dead:
                del self.engines[name]
        rescued = []
        for job in list(self.jobs.values()):
            orphan = job.claimed_by == engine_id if engine_id is not None else job.claimed_by not in self.engines
            if job.state not in HELD or not orphan:
                continue
            spent = job.state is JobState.RUNNING and job.attempt >= job.max_attempts
            state = JobState.CANCELED if job.cancel_requested else JobState.FAILED if spent else JobState.WAITING
            rescued.append(self._set(job.id, state=state, claim_token=None, cancel_requested=False,
                                     failed_at=now if state is JobState.FAILED else job.failed_at))
        return RescueResult(dead_engines=dead, retried=[j for j in rescued if j.state is JobState.WAITING],
                            failed=[j for j in rescued if j.state is JobState.FAILED],
                            canceled=[j for j in rescued if j.state is JobState.CANCELED])

    # -- engines --------------------------------------------------------------------------------

    def add_engine(self, engine_id: str, *, incarnation: str, host: str, pid: int, beat_ago: float = 0.0) -> None:
        at = self.clock.now() - timedelta(seconds=beat_ago)
        self.engines[engine_id] = EngineRecord(id=engine_id, host=host, pid=pid, started_at=at, heartbeat_at=at,
                                               incarnation=incarnation)

    async def engine_get(self, engine_id: str) -> EngineRecord | None:
        await self._enter("engine_get", engine_id=engine_id)
        return self.engines.get(engine_id)

    async def engine_register(self, registration: EngineRegistration, *, stale_after: float,
                              takeover_incarnation: str | None, takeover_quiet: float = 0.0,
                              now: datetime | None = None) -> bool:
        await self._enter("engine_register", registration=registration, takeover_incarnation=takeover_incarnation)
        now = self._now(now)
        holder = self.engines.get(registration.id)
        if holder is not None and not (
            holder.heartbeat_at < now - timedelta(seconds=stale_after)
            or (holder.incarnation == takeover_incarnation
                and holder.heartbeat_at < now - timedelta(seconds=takeover_quiet))
        ):
            return False
        self.engines[registration.id] = EngineRecord(
            id=registration.id, host=registration.host, pid=registration.pid, started_at=now, heartbeat_at=now,
            queues=None if registration.queues is None else list(registration.queues),
            incarnation=registration.incarnation)
        return True

    async def engine_unregister(self, engine_id: str, incarnation: str) -> None:
        await self._enter("engine_unregister", engine_id=engine_id)
        engine = self.engines.get(engine_id)
        if engine is not None and engine.incarnation == incarnation:
            del self.engines[engine_id]

    # -- schedules and inserts --------------------------------------------------------------------

    def add_schedule(self, name: str, expression: str, job: str, *, last_tick: datetime,
                     options: dict[str, Any] | None = None) -> None:
        self.schedules[name] = CronRecord(name=name, expression=expression, timezone="UTC", job=job,
                                          options=options or {}, last_tick=last_tick, created_at=last_tick)

    async def cron_list(self) -> list[CronRecord]:
        await self._enter("cron_list")
        return [self.schedules[name] for name in sorted(self.schedules)]

    async def cron_advance(self, name: str, tick: datetime, job_id: int | None) -> None:
        await self._enter("cron_advance", name=name, tick=tick, job_id=job_id)
        schedule = self.schedules[name]
        if schedule.last_tick is None or schedule.last_tick < tick:
            self.schedules[name] = replace(schedule, last_tick=tick, last_job_id=job_id or schedule.last_job_id)

    async def job_insert_many(self, inserts: Sequence[JobInsert], *, now: datetime | None = None,
                              connection: object | None = None, retention: Retention | None = None) -> list[JobRecord]:
        await self._enter("job_insert_many", inserts=list(inserts))
        now = self._now(now)
        records = []
        for insert in inserts:
            holder = next((j for j in self.jobs.values() if insert.unique_key is not None and j.unique_key ==
                           insert.unique_key and j.state in self._unique_states.get(j.id, ())), None)
            if holder is not None:
                records.append(replace(holder, existing=True))
                continue
            job_id = next(self._ids)
            available = insert.run_at or now + timedelta(seconds=insert.delay or 0.0)
            self.jobs[job_id] = JobRecord(
                id=job_id, queue=insert.queue, name=insert.name, args=json.loads(insert.args_json),
                kwargs=json.loads(insert.kwargs_json), state=JobState.WAITING, priority=insert.priority, attempt=0,
                max_attempts=insert.max_attempts, timeout=insert.timeout, inserted_at=now, available_at=available,
                unique_key=insert.unique_key, rescheduled_from=insert.rescheduled_from,
                meta=json.loads(insert.meta_json))
            self._unique_states[job_id] = tuple(insert.unique_states)
            records.append(self.job(job_id))
        return records
