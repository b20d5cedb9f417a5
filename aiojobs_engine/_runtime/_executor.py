"""The executor: runs each claimed job under a supervisor that alone writes its outcome.

For every claim the executor starts a supervisor task, at once if the job's queue has a
free slot; otherwise the claim is *parked* (claimed ahead, see ``_queues``) and its
supervisor starts when a slot frees, or at once to hand it back if interrupted meanwhile.
The supervisor waits for what the body needs (a thread slot, a worker process), marks the
job running (batched with other starts), launches the body — a task for async jobs, a
daemon thread for blocking ones, a worker process for CPU-bound ones — and waits for the
first of: the body ending, its timeout, a cancellation, or a shutdown hand-back. It then
writes exactly one fenced outcome.

The common case takes a lighter road: an async job claimed straight into ``running``, with
no hooks, needs nothing but its body, so no supervisor task is started for it. Its body's
end (a done-callback) decides and queues the outcome; its write's reply (another callback)
logs it. A supervisor task is started for it only if it must be stopped (timeout, cancel,
hand-back) or something goes wrong — and then does exactly what it does for any run.

Invariants:
- one outcome per claim, written by its supervisor; the body never writes;
- runs are keyed by claim token: a later claim of the same job is another run;
- a body that does not stop when told (swallows cancellation, blocks, runs in a thread) is
  *abandoned*: its outcome is recorded (timed out, canceled, handed back), its late result
  discarded, and its queue slot stays taken until it really ends, so concurrency limits
  keep telling the truth; this engine does not start the same job again meanwhile;
- whatever goes wrong inside a supervisor, it still writes an outcome (a failed attempt,
  or a hand-back if the body never started): a live engine never strands a job.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar, cast

from .. import _json
from .._backends._protocol import JobOutcome, JobStart, StartedJob
from .._context import JobContext, set_current_job
from .._control import Cancel, Complete, Delete, Fail, JobSignal, Retry, Snooze
from .._definitions import JobDefinition, RunMode
from .._errors import BackendError, JobTimeoutError, SerializationError, UnknownJobError
from .._events import EventKind, JobEvent
from .._hooks import Hooks, run_hooks
from .._log import Event, job_extra, logger
from .._records import JobRecord, JobState
from ._batcher import Batcher
from ._outcomes import Decision, RemoteError, log_outcome, outcome_for, settle_failure
from ._pool_worker import record_to_json, signal_from_reply
from ._process_pool import ProcessPool
from ._queues import QueueManager
from ._services import Services
from ._threads import run_in_daemon_thread

T = TypeVar("T")

STOP_GRACE = 2.0  # seconds a stopped body gets to end before it is abandoned
CANCEL = "cancel"
HAND_BACK = "hand_back"

Launch = Callable[[JobRecord, JobDefinition], "Body"]
Resource = tuple[Launch, Callable[[], None]]  # how to launch the body, and what to release when it ends


class InternalError(Exception):
    """Something failed inside the engine while it ran this attempt (see the engine's log)."""


@dataclass(eq=False, slots=True)
class Run:
    """One claim, from its supervisor's start to its outcome."""

    record: JobRecord
    interrupt: asyncio.Future[str]
    started: bool = False
    decided: bool = False  # the outcome is chosen: interrupts no longer apply
    written: bool = False  # the outcome was sent to the database (accepted or refused)
    abandoned: bool = False  # its body would not stop: the slot is released when it ends
    began: float | None = None  # when its body was launched (time.monotonic)
    slot: bool = False  # it holds one of its queue's slots
    parked: bool = False  # claimed ahead: waiting for a slot of its queue
    task: asyncio.Task[None] | None = field(default=None, repr=False)  # its supervisor, if any
    # The light road (no supervisor unless needed): its definition, body and deadline.
    definition: JobDefinition | None = field(default=None, repr=False)
    body: Body | None = field(default=None, repr=False)
    deadline: asyncio.TimerHandle | None = field(default=None, repr=False)
    starting: asyncio.Future[StartedJob | None] | None = field(default=None, repr=False)  # its start's write

    @property
    def token(self) -> str:
        return self.record.claim_token or ""

    def interrupt_with(self, reason: str) -> bool:
        if self.decided or self.interrupt.done():
            return False
        self.interrupt.set_result(reason)
        return True


@dataclass(eq=False, slots=True)
class Body:
    """A launched body: a future for its result, how to stop it, how to read its result."""

    future: asyncio.Future[Any]
    stop: Callable[[], None]
    stoppable: bool
    interpret: Callable[[Any], Decision] | None = None


class Executor:
    def __init__(
        self, services: Services, queues: QueueManager, pool: ProcessPool, on_slot_free: Callable[[bool], None]
    ) -> None:
        self._s = services
        self._queues = queues
        self._pool = pool
        self._on_slot_free = on_slot_free
        self._thread_slots = asyncio.Semaphore(services.settings.thread_workers)
        self._runs: dict[str, Run] = {}
        self._parked: dict[str, deque[Run]] = {}  # per queue, claims waiting for a slot
        self._abandoned: dict[int, int] = {}  # job id -> bodies still running after their outcome
        self._hooks: dict[str, Hooks] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self.attempts_started = 0
        # Starts and outcomes share one batched write (one statement on PostgreSQL): the
        # outcome of a job that ends and the start of the parked claim taking its slot go
        # to the database together.
        # The end of each write wakes the dispatcher, which holds its claims back while a
        # backlog of writes waits (see ``write_backlog``).
        self._writer: Batcher[JobStart | JobOutcome, StartedJob | bool | None] = Batcher(
            "writer", self._flush, on_written=lambda: on_slot_free(True))

    # -- what the dispatcher and the engine see ------------------------------------------

    @property
    def in_flight(self) -> int:
        """Claims whose outcome is not stored yet."""
        return len(self._runs)

    @property
    def write_backlog(self) -> int:
        """Starts and outcomes waiting behind the write in flight."""
        return self._writer.backlog

    def running_ids(self) -> list[int]:
        return [run.record.id for run in self._runs.values()]

    def known_tokens(self) -> set[str]:
        return set(self._runs)

    def undecided_claims(self) -> list[JobStart]:
        """The claims whose outcome is not chosen yet (what a cancellation could still stop)."""
        return [JobStart(run.record.id, run.token) for run in self._runs.values() if not run.decided]

    def submit(self, record: JobRecord) -> None:
        """Supervise a claim; a record already ``running`` was started by the claim itself."""
        run = Run(record=record, interrupt=asyncio.get_running_loop().create_future())
        self._runs[run.token] = run
        self._idle.clear()
        if self._queues.acquire(record.queue):
            self._launch(run, slot=True)
        else:
            run.parked = True
            self._parked.setdefault(record.queue, deque()).append(run)

    def _launch(self, run: Run, *, slot: bool) -> None:
        run.slot = slot
        run.parked = False
        if run.record.state is JobState.RUNNING:
            self._started(run)
        definition = self._light_road(run)
        if definition is not None and run.started:
            self._run_light(run, definition)
        elif definition is not None:
            self._start_light(run, definition)
        else:
            self._supervise(run, self._attempt, run)

    def _supervise(self, run: Run, step: Callable[..., Awaitable[None]], *args: Any) -> None:
        run.task = asyncio.create_task(self._supervised(run, step, *args), name=f"aiojobs-job-{run.record.id}")

    def starts_at_once(self, definition: JobDefinition) -> bool:
        """Can a claim of this job start it at once (nothing to wait for, no gate to ask)?"""
        return definition.mode is RunMode.INLINE and not self._hooks_for(definition).okay_to_run

    def cancel(self, job_id: int, token: str | None = None) -> bool:
        """Cancel a job this engine holds (``token`` None: whatever its claim)."""
        hit = False
        for run in list(self._runs.values()):
            if run.record.id == job_id and (token is None or run.token == token):
                hit = self._interrupt(run, CANCEL) or hit
        return hit

    def let_go(self, job_id: int, token: str) -> bool:
        """The claim was taken away from this engine: stop its run at once. Whatever the run
        writes is refused by fencing; the job's current state stands."""
        run = self._runs.get(token)
        if run is None or run.record.id != job_id or run.decided:
            return False  # (decided: it ended meanwhile, and its outcome is on its way)
        logger.warning("job %s was taken away from this engine while it ran (rescued, replaced, canceled, "
                       "retried or deleted elsewhere, or its claim undone by a database crash); stopping its run",
                       job_id,
                       extra=self._extra(run, Event.JOB_OUTCOME_REFUSED))
        return self._interrupt(run, HAND_BACK)

    def _interrupt(self, run: Run, reason: str) -> bool:
        if not run.interrupt_with(reason):
            return False
        if run.parked:  # its supervisor starts now, only to write the outcome
            self._parked[run.record.queue].remove(run)
            self._queues.unpark(run.record.queue)
            self._launch(run, slot=False)
        elif run.task is None and run.body is not None:  # on the light road: supervise the stop
            self._stop_light(run, reason)
        elif run.task is None and run.starting is not None:  # on the light road, starting
            run.decided = True
            self._supervise(run, self._start_then_stop, run)
        return True

    async def wait_idle(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def interrupt_all(self) -> list[Run]:
        """Every run not yet decided goes back to waiting, its attempt not charged."""
        return [run for run in list(self._runs.values()) if self._interrupt(run, HAND_BACK)]

    def hand_back_parked(self) -> int:
        """Stopping: claims still parked go back to waiting at once instead of starting."""
        parked = [run for runs in self._parked.values() for run in runs]
        return sum(self._interrupt(run, HAND_BACK) for run in parked)

    async def hand_back_all(self) -> int:
        """Shutdown: interrupt every undecided run and wait for its hand-back to be written."""
        runs = self.interrupt_all()
        supervisors = [run.task for run in runs if run.task is not None]
        if supervisors:
            await asyncio.wait(supervisors, timeout=5.0)
        return len(runs)

    async def close(self, timeout: float) -> None:
        await self._writer.close(timeout)
        leftovers = [run.task for run in self._runs.values() if run.task is not None and not run.task.done()]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)

    # -- batched writes -------------------------------------------------------------------

    # The writer answers a start with StartedJob | None and an outcome with a bool (_flush).

    def _submit_start(self, run: Run) -> asyncio.Future[StartedJob | None]:
        """Queue the run's start; the future settles with the started job, or None if taken away."""
        return cast("asyncio.Future[StartedJob | None]", self._writer.submit_nowait(JobStart(run.record.id, run.token)))

    def _submit_outcome(self, outcome: JobOutcome) -> asyncio.Future[bool]:
        """Queue an outcome; the future settles with whether the database accepted it."""
        return cast("asyncio.Future[bool]", self._writer.submit_nowait(outcome))

    async def _flush(self, writes: Sequence[JobStart | JobOutcome]) -> list[StartedJob | bool | None]:
        starts = [w for w in writes if isinstance(w, JobStart)]
        outcomes = [w for w in writes if isinstance(w, JobOutcome)]
        written = await self._s.backend.job_write_many(
            starts, outcomes, retention=self._s.settings.retention, now=self._s.clock.for_database()
        )
        by_id = {s.id: s for s in written.started}
        return [by_id.get(w.id) if isinstance(w, JobStart) else w.id in written.accepted for w in writes]

    # -- the supervisor -------------------------------------------------------------------

    async def _supervised(self, run: Run, step: Callable[..., Awaitable[None]], *args: Any) -> None:
        try:
            await step(*args)
        except Exception as exc:
            logger.exception("supervisor of job %s failed", run.record.id,
                             extra=self._extra(run, Event.COMPONENT_ERROR))
            if not run.written:
                await self._write_fallback(run, exc)
        finally:
            self._end(run)

    def _end(self, run: Run) -> None:
        """The run is over: forget it (idempotent)."""
        self._runs.pop(run.token, None)
        self._release_slot_once(run)
        if not self._runs:
            self._idle.set()
            self._on_slot_free(False)  # a draining dispatcher may be waiting for idleness

    def _release_slot(self, run: Run) -> None:
        """Free the run's queue slot: a parked claim of the queue takes it, if any."""
        run.slot = False
        queue = run.record.queue
        more = self._queues.release(queue)
        parked = self._parked.get(queue)
        while parked and self._queues.take_parked(queue):
            self._launch(parked.popleft(), slot=True)
        self._on_slot_free(more)

    def _release_slot_early(self, run: Run) -> None:
        """The body is done: its slot is free for the next claim while the outcome is written
        (the claim's round trip overlaps this write instead of following it). Not so for a
        capped queue, whose cap counts the job until its outcome is stored (a claim made
        meanwhile would find no room): its slot is freed once the write comes back."""
        if not self._queues.capped(run.record.queue):
            self._release_slot_once(run)

    def _release_slot_once(self, run: Run) -> None:
        """Free the run's queue slot, once (an abandoned body frees it when it really ends)."""
        if run.slot and not run.abandoned:
            self._release_slot(run)

    # -- the light road -------------------------------------------------------------------

    def _light_road(self, run: Run) -> JobDefinition | None:
        """The definition, if this run needs no supervisor to start: an async job with no
        hooks, nothing in the way (started by its claim, or to be started by a batched write)."""
        record = run.record
        if record.corrupt is not None or run.interrupt.done() or record.id in self._abandoned:
            return None
        definition = self._s.registry.get(record.name)
        if definition is None or definition.mode is not RunMode.INLINE or self._hooks_for(definition).around_attempts:
            return None
        return definition

    def _start_light(self, run: Run, definition: JobDefinition) -> None:
        """A claim parked ahead, not started: its start goes in the next batched write, and
        its body is launched when that write comes back (the attempt counts from then on: a
        job that kills its engine is charged for it, a claim that never started is not)."""
        run.definition = definition
        run.starting = self._submit_start(run)
        run.starting.add_done_callback(functools.partial(self._light_started, run))

    def _light_started(self, run: Run, starting: asyncio.Future[StartedJob | None]) -> None:
        if run.task is not None:  # interrupted meanwhile: its supervisor takes it from here
            return
        try:
            error = starting.exception()
            if error is not None:
                raise error
            if not self._apply_start(run, starting.result()):
                self._end(run)  # taken away before it started
                return
            assert run.definition is not None
            self._run_light(run, run.definition)
        except Exception as exc:
            self._light_failed(run, exc)

    async def _start_then_stop(self, run: Run) -> None:
        """Interrupted while its start was being written: wait for that write, then end the
        claim as the interrupt says (a started attempt is given back if handed back)."""
        assert run.starting is not None
        if self._apply_start(run, await run.starting):
            await self._finish(run, run.definition, self._interrupted(run))

    def _run_light(self, run: Run, definition: JobDefinition) -> None:
        run.definition = definition
        run.began = time.monotonic()
        body = run.body = self._launch_inline(run.record, definition)
        body.future.add_done_callback(functools.partial(self._light_ended, run))
        timeout = run.record.timeout
        if timeout is not None:
            run.deadline = asyncio.get_running_loop().call_later(timeout, self._stop_light, run, "timeout")

    def _stop_light(self, run: Run, reason: str) -> None:
        """A timeout or an interrupt reached a run on the light road: a supervisor takes over."""
        if run.decided or run.task is not None:
            return
        run.decided = True  # now, not when the supervisor first runs: its body may end meanwhile
        if run.deadline is not None:
            run.deadline.cancel()
        self._supervise(run, self._stop_and_finish, run, reason)

    async def _stop_and_finish(self, run: Run, reason: str) -> None:
        body, began = run.body, run.began
        assert body is not None and began is not None
        decision = self._ended(run, body, began) if body.future.done() else await self._stop_body(run, body, reason)
        await self._finish(run, run.definition, decision)

    def _light_ended(self, run: Run, _: asyncio.Future[Any]) -> None:
        if run.decided:  # being stopped: its supervisor decides
            return
        try:
            run.decided = True
            if run.deadline is not None:
                run.deadline.cancel()
            assert run.body is not None and run.began is not None
            decision = settle_failure(self._ended(run, run.body, run.began), run.record, run.definition)
            # Decided: nothing stops this body any more. Let its task and context go now
            # rather than when the outcome is written (a write behind can hold hundreds).
            run.body = run.deadline = None
            outcome = outcome_for(run.record, decision, self._s.engine_id, started=run.started)
            self._release_slot_early(run)
            written = self._submit_outcome(outcome)
            written.add_done_callback(functools.partial(self._light_written, run, decision))
        except Exception as exc:
            self._light_failed(run, exc)

    def _light_written(self, run: Run, decision: Decision, written: asyncio.Future[bool]) -> None:
        try:
            error = written.exception()
            if isinstance(error, BackendError):
                self._supervise(run, self._store_instead, run, run.definition, decision, error)
                return
            if error is not None:
                raise error
            self._written(run, decision, written.result())
            self._end(run)
        except Exception as exc:
            self._light_failed(run, exc)

    def _light_failed(self, run: Run, exc: Exception) -> None:
        """A step of the light road failed: a supervisor still ends the claim."""
        logger.error("supervisor of job %s failed", run.record.id, exc_info=exc,
                     extra=self._extra(run, Event.COMPONENT_ERROR))
        run.decided = True
        if run.written:
            self._end(run)
        else:
            self._supervise(run, self._write_fallback, run, exc)

    # -- the supervisor -------------------------------------------------------------------

    async def _write_fallback(self, run: Run, exc: Exception) -> None:
        """The supervisor itself failed: still end the claim, so the job is not stranded."""
        error = InternalError(f"the engine failed while running this attempt: {type(exc).__name__}: {exc}")
        decision = Decision.failure(error) if run.started else Decision.handed_back()
        try:
            await self._finish(run, None, decision)
        except Exception:
            logger.exception("could not record the outcome of job %s; it is rescued once this engine stops",
                             run.record.id, extra=self._extra(run, Event.COMPONENT_ERROR))

    async def _attempt(self, run: Run) -> None:
        record = run.record
        definition = self._s.registry.get(record.name)
        problem = _unrunnable(record, definition, self._s.engine_id)
        if problem is not None:
            if run.started or await self._start(run):
                await self._finish(run, definition, Decision.failure(problem, final=True))
            return
        assert definition is not None
        if record.id in self._abandoned:
            # An earlier body of this job still runs here (it ignored its timeout): do not
            # run a second one beside it. It comes back after a short wait, attempt unused.
            await self._finish(run, definition, Decision.deferred(STOP_GRACE))
            return
        if not await self._passes_gate(run, definition):
            return
        resource = await self._acquire(run, definition)
        if resource is None:
            await self._finish(run, definition, self._interrupted(run))
            return
        launch, release = resource
        launched = False
        try:
            if not run.interrupt.done() and (run.started or await self._start(run)):
                if run.interrupt.done():  # interrupted while the start was being written
                    await self._finish(run, definition, self._interrupted(run))
                    return
                await self._before(run, definition)
                began = run.began = time.monotonic()
                body = launch(run.record, definition)
                launched = True
                body.future.add_done_callback(lambda _: release())
                decision = await self._watch(run, body, began)
                await self._finish(run, definition, decision)
            elif not run.decided:
                await self._finish(run, definition, self._interrupted(run))
        finally:
            if not launched:
                release()

    async def _passes_gate(self, run: Run, definition: JobDefinition) -> bool:
        """Ask the okay_to_run hooks (before the start); False if the claim ended here
        (deferred, or interrupted while they were asked)."""
        if run.started or not self._hooks_for(definition).okay_to_run:
            return True
        gate = await self._interruptible(run, self._gate(run, definition), _nothing)
        if gate is None:
            await self._finish(run, definition, self._interrupted(run))
            return False
        if gate[0] is not None:
            await self._finish(run, definition, Decision.deferred(gate[0]))
            return False
        return True

    async def _acquire(self, run: Run, definition: JobDefinition) -> Resource | None:
        """What the body needs before it may start; None if interrupted while waiting."""
        if definition.mode is RunMode.INLINE:
            return self._launch_inline, _nothing
        if definition.mode is RunMode.THREAD:
            slots = self._thread_slots
            if await self._interruptible(run, slots.acquire(), lambda _: slots.release()) is None:
                return None
            return self._launch_thread, slots.release
        pool = self._pool
        acquired = await self._interruptible(run, pool.acquire(), pool.release)
        if acquired is None:
            return None
        worker = acquired[0]
        return functools.partial(self._launch_process, worker), functools.partial(pool.release, worker)

    async def _interruptible(self, run: Run, waiting_for: Awaitable[T], undo: Callable[[T], None]) -> tuple[T] | None:
        """``(result,)`` of ``waiting_for``, or None (and the result undone) if interrupted first."""
        waiter = asyncio.ensure_future(waiting_for)
        if not waiter.done():
            pending: set[asyncio.Future[Any]] = {waiter, run.interrupt}
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if not run.interrupt.done():
            return (waiter.result(),)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        if not waiter.cancelled() and waiter.exception() is None:
            undo(waiter.result())  # it came at the very moment of the interrupt
        return None

    def _interrupted(self, run: Run) -> Decision:
        if run.interrupt.result() == CANCEL:
            return Decision.canceled("canceled before it started" if not run.started else "canceled")
        return Decision.handed_back()

    async def _start(self, run: Run) -> bool:
        return self._apply_start(run, await self._submit_start(run))

    def _apply_start(self, run: Run, started: StartedJob | None) -> bool:
        """The start's write came back: the run is started, or (None) its job was taken away."""
        if started is None:
            run.decided = run.written = True
            logger.info(
                "job %s was taken away before it started (canceled or rescued meanwhile)", run.record.id,
                extra=self._extra(run, Event.JOB_OUTCOME_REFUSED),
            )
            return False
        run.record = replace(run.record, state=JobState.RUNNING, attempt=started.attempt,
                             attempted_at=started.attempted_at)
        self._started(run)
        return True

    def _started(self, run: Run) -> None:
        run.started = True
        self.attempts_started += 1
        if self._s.events.wants(EventKind.JOB_STARTED) and run.record.attempted_at is not None:
            wait = (run.record.attempted_at - run.record.available_at).total_seconds()
            self._emit(EventKind.JOB_STARTED, run, queue_wait=max(0.0, wait))

    def _emit(self, kind: str, run: Run, **fields: Any) -> None:
        self._s.events.emit(JobEvent(kind=kind, at=self._s.clock.now(), engine_id=self._s.engine_id,
                                     job=run.record, **fields))

    async def _watch(self, run: Run, body: Body, began: float) -> Decision:
        await _first_of(body.future, run.interrupt, run.record.timeout)
        run.decided = True
        if body.future.done():  # the body's own end wins over an interrupt that came with it
            return self._ended(run, body, began)
        return await self._stop_body(run, body, run.interrupt.result() if run.interrupt.done() else "timeout")

    def _ended(self, run: Run, body: Body, began: float) -> Decision:
        """What the body's own end decides."""
        elapsed = time.monotonic() - began
        self._queues.observe(run.record.queue, elapsed)
        timeout = run.record.timeout
        if timeout is not None and elapsed > timeout:
            # It ended, but after its deadline: it blocked the event loop, so the timeout
            # could not interrupt it. Its result is void.
            _consume(body.future)
            return Decision.failure(JobTimeoutError(
                f"ran {elapsed:.1f}s, past its timeout of {timeout:g}s, blocking the event loop; "
                "its result was discarded"
            ))
        return _decide(body)

    async def _stop_body(self, run: Run, body: Body, reason: str) -> Decision:
        """Stop a body that has not ended (timeout, cancel, hand-back) and say what that decides."""
        self._queues.observe(run.record.queue, time.monotonic() - (run.began or time.monotonic()))
        timeout = run.record.timeout or 0.0
        body.stop()
        # A hand-back is decided at once (shutdown has a deadline); a cancel or a timeout
        # gives the body a moment to clean up first.
        grace = STOP_GRACE if body.stoppable and reason != HAND_BACK else 0
        ended, _ = await asyncio.wait({body.future}, timeout=grace) if grace else (set(), set())
        if ended or body.future.done():
            _consume(body.future)
        else:
            self._abandon(run, body, reason)
        if reason == CANCEL:
            return Decision.canceled("canceled while running")
        if reason == HAND_BACK:
            return Decision.handed_back()
        return Decision.failure(JobTimeoutError(f"timed out after {timeout:g}s"))

    def _abandon(self, run: Run, body: Body, reason: str) -> None:
        run.abandoned = True
        job_id = run.record.id
        self._abandoned[job_id] = self._abandoned.get(job_id, 0) + 1
        if reason != HAND_BACK:
            logger.warning(
                "job %s did not stop when told to (%s): %s; its slot stays taken until it ends",
                job_id, reason, "it ignores cancellation or blocks" if body.stoppable else "a thread cannot be stopped",
                extra=self._extra(run, Event.JOB_TIMEOUT_IGNORED),
            )

        def ended(future: asyncio.Future[Any]) -> None:
            _consume(future)
            left = self._abandoned.get(job_id, 1) - 1
            if left:
                self._abandoned[job_id] = left
            else:
                self._abandoned.pop(job_id, None)
            if run.slot:
                self._release_slot(run)

        body.future.add_done_callback(ended)

    async def _finish(self, run: Run, definition: JobDefinition | None, decision: Decision) -> None:
        run.decided = True
        decision = settle_failure(decision, run.record, definition)
        outcome = outcome_for(run.record, decision, self._s.engine_id, started=run.started)
        self._release_slot_early(run)
        try:
            accepted = await self._submit_outcome(outcome)
        except BackendError as exc:
            await self._store_instead(run, definition, decision, exc)
            return
        if self._written(run, decision, accepted):
            await self._after(run, definition, decision)

    async def _store_instead(self, run: Run, definition: JobDefinition | None, decision: Decision,
                             exc: BackendError) -> None:
        """The database refused this outcome itself (not a lost connection: those are
        retried). Record a plain failed attempt instead, which it can store."""
        logger.error("the outcome of job %s (%s) could not be stored: %s; recording a failed attempt instead",
                     run.record.id, decision.kind, exc, extra=self._extra(run, Event.COMPONENT_ERROR))
        decision = settle_failure(Decision.failure(InternalError(
            f"the outcome of this attempt ({decision.kind}) could not be stored: {type(exc).__name__}"
        )), run.record, definition)
        accepted = await self._submit_outcome(outcome_for(run.record, decision, self._s.engine_id,
                                                          started=run.started))
        if self._written(run, decision, accepted):
            await self._after(run, definition, decision)

    def _written(self, run: Run, decision: Decision, accepted: bool) -> bool:
        """The outcome's write came back: log it, tell listeners. True if after-hooks are due."""
        run.written = True
        self._release_slot_once(run)  # (a capped queue's slot is held until its outcome is stored)
        if not accepted:
            # A claim canceled before it started finds its job canceled already: nothing to say.
            quiet = decision.kind == "canceled" and not run.started
            logger.log(
                logging.INFO if quiet else logging.WARNING,
                "outcome of job %s (%s) refused: its claim was taken away meanwhile (rescued, handed "
                "back or canceled); the job's current state stands", run.record.id, decision.kind,
                extra=self._extra(run, Event.JOB_OUTCOME_REFUSED),
            )
            return False
        log_outcome(run.record, decision)
        kind = _event_kind(decision)
        if self._s.events.wants(kind):
            self._emit(kind, run, error=decision.error, result=decision.result,
                       duration=None if run.began is None else time.monotonic() - run.began)
        return run.started and decision.kind not in ("deferred", "handed_back")

    def _hooks_for(self, definition: JobDefinition | None) -> Hooks:
        if definition is None:
            return self._s.hooks
        hooks = self._hooks.get(definition.name)
        if hooks is None:
            hooks = self._hooks[definition.name] = self._s.hooks.then(definition.hooks)
        return hooks

    async def _before(self, run: Run, definition: JobDefinition) -> None:
        hooks = self._hooks_for(definition).before_perform
        if hooks:
            await run_hooks("before_perform", hooks, run.record, extra=self._extra(run))

    async def _after(self, run: Run, definition: JobDefinition | None, decision: Decision) -> None:
        hooks = self._hooks_for(definition)
        if not hooks:
            return
        record = run.record
        extra = self._extra(run)
        if decision.kind == "completed" and hooks.on_success:
            await run_hooks("on_success", hooks.on_success, record, decision.result, extra=extra)
        elif decision.kind == "failure" and decision.error is not None:
            await run_hooks("on_failure", hooks.on_failure, record, decision.error, extra=extra)
            if decision.exhausted:
                await run_hooks("on_max_attempts_exhausted", hooks.on_max_attempts_exhausted, record,
                                decision.error, extra=extra)
        if hooks.after_perform:
            await run_hooks("after_perform", hooks.after_perform, record, decision.kind, extra=extra)

    async def _gate(self, run: Run, definition: JobDefinition) -> float | None:
        """Ask the okay_to_run hooks: seconds to defer the job by, or None to run it."""
        hooks = self._hooks_for(definition).okay_to_run
        if not hooks:
            return None
        for answer in await run_hooks("okay_to_run", hooks, run.record, extra=self._extra(run)):
            if answer is False:
                return definition.requeue_delay
            if isinstance(answer, int | float) and not isinstance(answer, bool) and answer >= 0:
                return float(answer)
        return None

    # -- launching bodies -----------------------------------------------------------------

    def _context_for(self, record: JobRecord) -> contextvars.Context:
        context = contextvars.copy_context()
        context.run(set_current_job, JobContext(record, self._s.engine_id))
        for hook in self._s.context_hooks:
            try:
                context.run(hook, record)
            except Exception:
                logger.exception("context hook %r failed", hook,
                                 extra={**job_extra(Event.HOOK_FAILED, record.id, record.name, record.queue,
                                                    record.attempt), "hook": "context"})
        return context

    def _launch_inline(self, record: JobRecord, definition: JobDefinition) -> Body:
        task = asyncio.get_running_loop().create_task(
            _call(definition, record), name=f"aiojobs-body-{record.id}", context=self._context_for(record)
        )
        return Body(task, lambda: _nothing(task.cancel()), stoppable=True)

    def _launch_thread(self, record: JobRecord, definition: JobDefinition) -> Body:
        call = functools.partial(self._context_for(record).run, _call_blocking, definition, record)
        future = run_in_daemon_thread(call, name=f"aiojobs-job-{record.id}")
        return Body(future, _nothing, stoppable=False)

    def _launch_process(self, worker: Any, record: JobRecord, definition: JobDefinition) -> Body:
        module, qualname = definition.import_path
        body = self._pool.run(worker, {
            "job_id": record.id,
            "module": module,
            "qualname": qualname,
            "is_class": definition.is_class,
            "args": _json.dumps(record.args, "args"),
            "kwargs": _json.dumps(record.kwargs, "kwargs"),
            "constructor_args": _json.dumps(record.constructor_args, "constructor_args"),
            "record": record_to_json(record),
            "engine_id": self._s.engine_id,
        })
        return Body(body.future, body.stop, stoppable=True, interpret=_decision_from_reply)

    def _extra(self, run: Run, event: str = "") -> dict[str, object]:
        r = run.record
        return job_extra(event, r.id, r.name, r.queue, r.attempt)


def _nothing(*_: object) -> None:
    return None


async def _first_of(body: asyncio.Future[Any], interrupt: asyncio.Future[str], timeout: float | None) -> None:
    """Wait until the body ends, an interrupt comes, or ``timeout`` passes (the hot path's
    ``asyncio.wait``, without its sets and per-call bookkeeping)."""
    if body.done() or interrupt.done():
        return
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    body.add_done_callback(wake)
    interrupt.add_done_callback(wake)
    deadline = None if timeout is None else loop.call_later(timeout, wake)
    try:
        await waiter
    finally:
        body.remove_done_callback(wake)
        interrupt.remove_done_callback(wake)
        if deadline is not None:
            deadline.cancel()


def _event_kind(decision: Decision) -> str:
    if decision.kind == "failure":
        return EventKind.JOB_FAILED if decision.final else EventKind.JOB_RETRYING
    return {
        "completed": EventKind.JOB_COMPLETED, "snoozed": EventKind.JOB_SNOOZED,
        "canceled": EventKind.JOB_CANCELED, "deleted": EventKind.JOB_DELETED,
        "deferred": EventKind.JOB_DEFERRED, "handed_back": EventKind.JOB_HANDED_BACK,
    }[decision.kind]


def _unrunnable(record: JobRecord, definition: JobDefinition | None, engine_id: str) -> Exception | None:
    """Why this job cannot run here at all (it fails for good), or None."""
    if record.corrupt is not None:
        return SerializationError(f"the stored job could not be read: {record.corrupt}")
    if definition is None:
        return UnknownJobError(
            f"no job named {record.name!r} is declared in engine {engine_id}; "
            "does this worker run the same code as the enqueuer?"
        )
    return None


class JobExitError(Exception):
    """An async job called ``sys.exit()``; raised instead, so the engine's loop carries on."""


async def _call(definition: JobDefinition, record: JobRecord) -> Any:
    try:
        if definition.is_class:
            instance = definition.target(*record.constructor_args)
            return await instance.run(*record.args, **record.kwargs)
        return await definition.target(*record.args, **record.kwargs)
    except SystemExit as exc:  # asyncio would re-raise it out of the event loop
        raise JobExitError(f"the job called sys.exit({exc.code!r})") from None


def _call_blocking(definition: JobDefinition, record: JobRecord) -> Any:
    if definition.is_class:
        return definition.target(*record.constructor_args).run(*record.args, **record.kwargs)
    return definition.target(*record.args, **record.kwargs)


def _decide(body: Body) -> Decision:
    future = body.future
    if future.cancelled():
        # Cancelled, but not by us (we decide before stopping): treat like an error.
        return Decision.failure(JobTimeoutError("the job's task was cancelled from inside"))
    exc = future.exception()
    if exc is not None:
        if isinstance(exc, JobSignal):
            return decision_for_signal(exc)
        return Decision.failure(exc)
    if body.interpret is not None:
        return body.interpret(future.result())
    return _completed(future.result())


def _completed(result: object) -> Decision:
    if result is None:
        return Decision.completed("null", None)
    try:
        return Decision.completed(_json.dumps(result, "the job's return value"), result)
    except SerializationError as error:
        return Decision.failure(error, final=True)


def decision_for_signal(sig: JobSignal) -> Decision:
    if isinstance(sig, Complete):
        return _completed(sig.result)
    if isinstance(sig, Retry):
        return Decision.failure(sig, delay=sig.delay)
    if isinstance(sig, Snooze):
        return Decision.snoozed(sig.delay)
    if isinstance(sig, Cancel):
        return Decision.canceled(sig.reason)
    if isinstance(sig, Delete):
        return Decision.deleted()
    assert isinstance(sig, Fail)
    return Decision.failure(sig, final=True)


def _decision_from_reply(reply: dict[str, Any]) -> Decision:
    """A worker process's reply, as a decision."""
    kind = reply.get("kind")
    if kind == "ok":
        return Decision.completed(reply["result"], _json.loads(reply["result"]))
    if kind == "signal":
        return decision_for_signal(signal_from_reply(reply))
    error = RemoteError(reply.get("name", "Error"), reply.get("message", ""), reply.get("traceback"))
    return Decision.failure(error, final=bool(reply.get("final")))


def _consume(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception as retrieved (its outcome was decided another way)."""
    if future.done() and not future.cancelled():
        future.exception()
