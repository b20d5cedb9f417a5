"""One claimed job's life, read top to bottom in ``Run.life``.

    claimed ──▶ (okay_to_run, a thread slot or a worker process, the start's write)
            ──▶ running: the body, inline under ``asyncio.timeout``, on a thread, or in the pool
            ──▶ decided: exactly one fenced outcome handed to the writer
            ──▶ done: the write came back; logged, listeners told, after-hooks run

A job claimed straight into ``running`` (an async body with no ``okay_to_run`` hook: the
claim counted its attempt) skips the first step; that is the common case, and the same code.
Its queue slot was taken by the producer when it claimed the job (it claims only free
slots); the run gives it back once its outcome is decided (a capped queue's, once stored).

The state of a run is ``RunState``, changed only by ``Run._to``. A run's body always ends
before its outcome is decided: a body told to stop (its timeout, a cancel, a hand-back) that
does not — it swallows the cancellation, blocks the loop, or runs on a thread, which nothing
can stop — keeps its job ``running`` under this engine's claim, and its slot, until it
really ends, so no retry of it can start anywhere meanwhile. The one exception is shutdown:
a body still running at the end of the grace period is left to the exiting process, and its
job handed back (or recorded as timed out, if its deadline had passed) at once (``abandon``).

Cancellation: the run cancels its own task only to stop a body running inline, or a wait
that a stop may cut short (hooks, a thread slot, a worker process). Any other cancellation
of its task (the job's own code, a library) is not allowed to strand the claim: it ends the
attempt as a failure. Only the runner's ``close`` at the very end of shutdown tears runs
down; what they held is rescued later. A start's write is waited for to its end whatever
happens; an outcome's write always goes through (a stray cancellation loses only its answer).

May call: what its ``Runner`` shares (the writer, the pool, thread slots, hooks, the
producer's slot release), ``_outcomes`` and ``_bodies``.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from .._backends._protocol import JobOutcome, StartedJob
from .._context import JobContext, set_current_job
from .._definitions import JobDefinition, RunMode
from .._errors import BackendError, BackendUnavailableError, JobTimeoutError
from .._hooks import run_hooks
from .._log import Event, job_extra, logger
from .._records import JobRecord, JobState
from ._bodies import call_inline, process_task, start_thread
from ._outcomes import (
    Decision,
    decision_for_error,
    decision_for_reply,
    decision_for_result,
    log_outcome,
    outcome_for,
    settle_failure,
    unrunnable,
)

if TYPE_CHECKING:
    from ._runner import Runner

T = TypeVar("T")

STOP_GRACE = 2.0  # seconds a body told to stop has before it is reported as not stopping
_OVERRAN = 0.25  # a body that ends this long past its deadline did not stop when told to


class InternalError(Exception):
    """Something failed inside the engine while it ran this attempt (see the engine's log)."""


class TaskCancelledError(Exception):
    """The job's task was cancelled by something other than the engine (the job's own code?)."""


class RunState(enum.IntEnum):  # (an IntEnum: hashed in C, a few times per job)
    CLAIMED = 1  # its body has not begun: okay_to_run, a resource, its start, before_perform
    RUNNING = 2  # its body runs
    STOPPING = 3  # its body was told to stop (timeout, cancel, hand-back) and has not ended
    DECIDED = 4  # its one outcome is chosen and handed to the writer
    DONE = 5  # the outcome's write came back (accepted or refused), or the claim was taken away


_MOVES: dict[RunState, frozenset[RunState]] = {
    RunState.CLAIMED: frozenset({RunState.RUNNING, RunState.DECIDED}),
    RunState.RUNNING: frozenset({RunState.STOPPING, RunState.DECIDED}),
    RunState.STOPPING: frozenset({RunState.DECIDED}),
    RunState.DECIDED: frozenset({RunState.DONE}),
    RunState.DONE: frozenset(),
}


class Stop(enum.Enum):
    """Why a run is told to stop; once told, its outcome is the stop's (the first reason wins)."""

    TIMEOUT = "timed out"
    CANCEL = "canceled"
    HAND_BACK = "handed back"


class Run:
    """One claim, from the producer's hand-over to its stored outcome."""

    __slots__ = ("_began", "_definition", "_hooks", "_kill", "_runner", "_slot_held", "_stopped_at",
                 "_waiting", "record", "state", "stop_reason", "task")

    def __init__(self, runner: Runner, record: JobRecord, definition: JobDefinition | None) -> None:
        self._runner = runner
        self.record = record
        self._definition = definition
        self._hooks = runner.hooks_for(definition)
        self.state = RunState.CLAIMED
        self.stop_reason: Stop | None = None
        self.task: asyncio.Task[None] | None = None
        self._slot_held = True  # the producer took the queue slot when it claimed the job
        self._waiting = False  # in a wait that a stop may cut short (hooks, resources)
        self._kill: Callable[[], None] | None = None  # how to stop a worker process's body
        self._began = 0.0  # time.monotonic() when the body began
        self._stopped_at = 0.0  # time.monotonic() when it was told to stop

    @property
    def attempt_counted(self) -> bool:
        """The job is ``running`` in the database, its attempt counted (by its claim, or its start)."""
        return self.record.state is JobState.RUNNING

    @property
    def token(self) -> str:
        return self.record.claim_token or ""

    def _to(self, state: RunState) -> None:
        """The one way a run changes state."""
        if state not in _MOVES[self.state]:
            raise RuntimeError(f"job {self.record.id}: a run cannot go from {self.state.name} to {state.name}")
        self.state = state

    # -- the life of a job ----------------------------------------------------------------------

    async def life(self) -> None:
        """Claim → (start) → body → one fenced outcome; whatever happens, the slot goes back."""
        try:
            try:
                decision = await self._attempt()
            except asyncio.CancelledError:
                if self._runner.closing:
                    raise  # torn down at the end of shutdown: what it held is rescued later
                decision = self._after_cancellation()
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # a bug in the engine, or a hook's BaseException: still end the claim
                logger.exception("the run of job %s failed", self.record.id,
                                 extra=self.log_extra(Event.COMPONENT_ERROR))
                decision = self._engine_failure(exc)
            if decision is None:
                self._taken_away()
            else:
                await self._conclude(decision)
        finally:
            self._release_slot()
            self._runner.forget(self)

    async def _attempt(self) -> Decision | None:
        """Start the job if its claim did not, run its body, say how the attempt ended (None:
        the claim was taken away before the job started: there is nothing to write)."""
        record, definition = self.record, self._definition
        problem = unrunnable(record, definition, self._runner.engine_id)
        if problem is not None:
            return Decision.failure(problem, final=True) if self.attempt_counted or await self._start() else None
        assert definition is not None
        if self._runner.body_running(record.id):
            # A body of this job still runs here (its claim was taken away, then the job came
            # back to this engine): never two at once. It returns after a short wait, attempt unused.
            return Decision.deferred(STOP_GRACE)
        # A claim starts a job itself when nothing stands before its body, and every job of
        # a rate-limited queue (there the claim is the start its limit counts): the gates
        # then still come first, and no start is written after them.
        if not self.attempt_counted or not self._runner.starts_at_once(definition):
            defer = await self._ask_okay_to_run()
            if self._told() is not None:
                return self._after_cancellation()  # (a hook that swallowed the stop)
            if defer is not None:
                return Decision.deferred(defer)
            if definition.mode is not RunMode.INLINE:
                return await self._off_the_loop(definition)
            if not self.attempt_counted and not await self._start():
                return None
        await self._before_body()
        if self._told() is not None:
            return self._stopped()
        return await self._run_inline(definition)

    async def _run_inline(self, definition: JobDefinition) -> Decision:
        """The body in this task, under ``asyncio.timeout``; told to stop, it is cancelled."""
        record = self.record
        timeout = record.timeout
        deadline: asyncio.Timeout | None = None
        self._began = time.monotonic()
        self._to(RunState.RUNNING)
        self._runner.body_began(record.id)
        try:
            if timeout is None:
                result = await call_inline(definition, record)
            else:
                async with asyncio.timeout(timeout) as deadline:
                    result = await call_inline(definition, record)
        except asyncio.CancelledError:
            if self._runner.closing:
                raise
            return self._after_cancellation()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # what the body raised (pytest's fail() too); a stop's outcome comes first
            if self._told() is not None:
                return self._after_cancellation()
            if isinstance(exc, TimeoutError) and deadline is not None and deadline.expired():
                return self._timed_out()
            return decision_for_error(exc)
        else:
            if self._told() is not None:  # it swallowed the stop, and ended later by itself
                return self._after_cancellation()
            if timeout is not None and time.monotonic() - self._began > timeout:
                return self._timed_out()  # it blocked the loop past its deadline
            return decision_for_result(result)
        finally:
            self._runner.body_ended(record.id)

    async def _off_the_loop(self, definition: JobDefinition) -> Decision | None:
        """A blocking body on a daemon thread (it takes a thread slot), or a CPU-bound one in a
        worker process (it takes a worker); the job starts once it has one."""
        launch: Callable[[], tuple[asyncio.Future[Any], Callable[[], None] | None, Callable[[Any], Decision]]]
        if definition.mode is RunMode.THREAD:
            slots = self._runner.thread_slots
            await self._interruptible(slots.acquire())
            release: Callable[[], None] = slots.release

            def launch() -> tuple[asyncio.Future[Any], None, Callable[[Any], Decision]]:
                return start_thread(definition, self.record), None, decision_for_result
        else:
            pool = self._runner.pool
            worker = await self._interruptible(pool.acquire())
            release = functools.partial(pool.release, worker)

            def launch() -> tuple[asyncio.Future[Any], Callable[[], None], Callable[[Any], Decision]]:
                body = pool.run(worker, process_task(definition, self.record, self._runner.engine_id))
                return body.future, body.stop, decision_for_reply
        try:
            if not self.attempt_counted and not await self._start():  # (a limited claim started it)
                return None
            await self._before_body()
            if self._told() is not None:
                return self._stopped()
            body, kill, interpret = launch()
            return await self._run_elsewhere(body, kill=kill, interpret=interpret)
        finally:
            release()

    async def _run_elsewhere(self, body: asyncio.Future[Any], *, kill: Callable[[], None] | None,
                             interpret: Callable[[Any], Decision] = decision_for_result) -> Decision:
        """Wait for a body on a thread or in a worker process: its end, or its timeout (then
        stop it if it can be, and still wait for its end). ``asyncio.wait`` neither raises
        the body's error nor cancels the body when the wait is cut short."""
        self._kill = kill
        self._began = time.monotonic()
        self._to(RunState.RUNNING)
        self._runner.body_began(self.record.id)
        try:
            async with asyncio.timeout(self.record.timeout):
                await asyncio.wait([body])
        except TimeoutError:
            if not body.done():
                self.stop(Stop.TIMEOUT)
        finally:
            if body.done():
                self._runner.body_ended(self.record.id)
            else:  # torn down while its body runs on: count it until it ends
                body.add_done_callback(lambda _: self._runner.body_ended(self.record.id))
        await asyncio.wait([body])
        if self._told() is not None:
            _consume(body)
            return self._stopped()
        error = body.exception()
        return decision_for_error(error) if error is not None else interpret(body.result())

    # -- how a stopped or broken attempt ends ------------------------------------------------------

    def _told(self) -> Stop | None:
        """The stop asked for, read anew after each await (a stop comes from elsewhere)."""
        return self.stop_reason

    def _after_cancellation(self) -> Decision:
        """This task was cancelled, or a stop came while it awaited: take the cancellation
        back (the rest of the run must write its outcome) and say how the attempt ends."""
        _take_back_cancellation()
        if self._told() is not None:
            return self._stopped()
        return Decision.failure(TaskCancelledError(
            "the job's task was cancelled by something other than the engine (the job's own code or a library)"))

    def _stopped(self) -> Decision:
        """How a run that was told to stop ends: its deadline, if it passed, comes first."""
        if self.stop_reason is Stop.TIMEOUT or self._past_deadline():
            return self._timed_out()
        if self.stop_reason is Stop.CANCEL:
            began = self.state is not RunState.CLAIMED
            return Decision.canceled("canceled while running" if began else "canceled before it started")
        return Decision.handed_back()

    def _past_deadline(self) -> bool:
        timeout = self.record.timeout
        return self._began > 0 and timeout is not None and time.monotonic() - self._began > timeout

    def _timed_out(self) -> Decision:
        timeout = self.record.timeout or 0.0
        ran = time.monotonic() - self._began
        if ran > timeout + _OVERRAN:
            return Decision.failure(JobTimeoutError(
                f"timed out after {timeout:g}s and ran {ran:.1f}s before it stopped (it ignored the cancellation, "
                "blocked the event loop, or ran on a thread); its result was discarded"))
        return Decision.failure(JobTimeoutError(f"timed out after {timeout:g}s"))

    def _engine_failure(self, exc: BaseException) -> Decision:
        if not self.attempt_counted:
            return Decision.handed_back()
        return Decision.failure(InternalError(
            f"the engine failed while running this attempt: {type(exc).__name__}: {exc}"))

    def _taken_away(self) -> None:
        """The start's write found the claim gone (canceled, rescued): nothing to write."""
        self._to(RunState.DECIDED)
        self._to(RunState.DONE)
        logger.info("job %s was taken away before it started (canceled or rescued meanwhile)", self.record.id,
                    extra=self.log_extra(Event.JOB_OUTCOME_REFUSED))

    # -- starting ---------------------------------------------------------------------------------

    async def _start(self) -> bool:
        """Write the start (batched): the attempt counts from now. False: the claim was taken
        away meanwhile (canceled, rescued)."""
        started: StartedJob | None = await self._written(self._runner.writer.start(self.record.id, self.token))
        if started is None:
            return False
        self._counted(started)
        return True

    def _counted(self, started: StartedJob) -> None:
        self.record = replace(self.record, state=JobState.RUNNING, attempt=started.attempt,
                              attempted_at=started.attempted_at)
        self._runner.note_started(self)

    async def _written(self, write: asyncio.Future[StartedJob | None]) -> StartedJob | None:
        """Wait for a start's write to its end: a cancellation of this task meanwhile (other
        than the final teardown) waits for it too, then is handled as it would have been."""
        try:
            return await asyncio.shield(write)
        except asyncio.CancelledError:
            if self._runner.closing:
                raise
            started = await write
            if started is not None:
                self._counted(started)
            raise

    async def _ask_okay_to_run(self) -> float | None:
        """Seconds to defer the job by, if an okay_to_run hook says so; else None."""
        hooks = self._hooks.okay_to_run
        if not hooks:
            return None
        for answer in await self._interruptible(run_hooks("okay_to_run", hooks, self.record, extra=self.log_extra())):
            if answer is False:
                assert self._definition is not None
                return self._definition.requeue_delay
            if isinstance(answer, int | float) and not isinstance(answer, bool) and answer >= 0:
                return float(answer)
        return None

    async def _interruptible(self, waiting: Coroutine[Any, Any, T]) -> T:
        """Await ``waiting`` (hooks, a thread slot, a worker process) where a stop cuts in, as a
        cancellation of this run's task (each of these waits gives back what it got if
        cancelled at the moment it got it); a stop that came before raises at once."""
        if self.stop_reason is not None:
            waiting.close()
            raise asyncio.CancelledError
        self._waiting = True
        try:
            return await waiting
        finally:
            self._waiting = False

    async def _before_body(self) -> None:
        set_current_job(JobContext(self.record, self._runner.engine_id))
        self._runner.run_context_hooks(self.record)
        if self._hooks.before_perform:
            await self._interruptible(run_hooks("before_perform", self._hooks.before_perform, self.record,
                                                extra=self.log_extra()))

    # -- stopping -----------------------------------------------------------------------------------

    def stop(self, reason: Stop) -> None:
        """Tell the run to stop (the first reason wins). A body is cancelled (inline), killed (a
        worker process) or, on a thread, left to end by itself; a run whose body has not begun
        ends without it (at once if it is waiting on something a stop may cut short)."""
        if self.stop_reason is not None or self.state in (RunState.DECIDED, RunState.DONE):
            return
        self.stop_reason = reason
        if self.state is RunState.CLAIMED:
            if self._waiting:
                self._cancel_task()
            return
        self._to(RunState.STOPPING)
        self._stopped_at = time.monotonic()
        if self.mode is RunMode.INLINE:
            self._cancel_task()  # the body runs in this run's task
        elif self._kill is not None:
            self._kill()  # a worker process (a thread cannot be stopped)

    def _cancel_task(self) -> None:
        # A job that cancels itself (engine.cancel of its own id) is told, not interrupted: a
        # task cannot take back a cancellation it asked of itself (Python 3.11).
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()

    def abandon(self) -> asyncio.Task[None] | None:
        """Shutdown: a body that has not ended is left to the exiting process; its job goes
        back to waiting now (or is recorded as timed out, if its deadline passed). The run's
        own life ends with the body, writing nothing more."""
        if self.state not in (RunState.RUNNING, RunState.STOPPING):
            return None
        self.stop(Stop.HAND_BACK)
        return asyncio.create_task(self._conclude(self._stopped()), name=f"aiojobs-hand-back-{self.record.id}")

    def overdue(self, now: float) -> str | None:
        """Why this run's body should have ended by ``now`` and has not (None: it is fine)."""
        if self.state is RunState.STOPPING and now - self._stopped_at > STOP_GRACE:
            assert self.stop_reason is not None
            return f"it was {self.stop_reason.value} {now - self._stopped_at:.0f}s ago"
        timeout = self.record.timeout
        if self.state is RunState.RUNNING and timeout is not None and now - self._began > timeout + STOP_GRACE:
            return f"it timed out {now - self._began - timeout:.0f}s ago"
        return None

    # -- the outcome ----------------------------------------------------------------------------------

    async def _conclude(self, decision: Decision) -> None:
        """``_finish``, whose failure is logged (the job is then rescued once this engine stops)."""
        try:
            await self._finish(decision)
        except Exception:
            logger.exception("could not record the outcome of job %s; it is rescued once this engine stops",
                             self.record.id, extra=self.log_extra(Event.COMPONENT_ERROR))

    async def _finish(self, decision: Decision) -> None:
        """Hand exactly one fenced outcome to the writer, then report it."""
        if self.state in (RunState.DECIDED, RunState.DONE):
            return  # decided already (at shutdown, while its body ran on)
        self._to(RunState.DECIDED)
        decision, outcome = self._outcome(decision)
        if not self._runner.capped(self.record.queue):
            # The slot is free for the next claim while the outcome is written. A capped
            # queue's cap counts the job until its outcome is stored: its slot waits for that.
            # (A key's limit counts it too, in the database: the key is said freed below.)
            self._release_slot()
        written = self._runner.writer.finish(outcome)
        try:
            accepted = await written
        except asyncio.CancelledError:
            # The outcome is in the writer's batch: it is written. Only its answer is lost.
            if self._runner.closing:
                raise
            _take_back_cancellation()
            logger.info("job %s: the answer to its outcome's write was lost to a cancellation of its run",
                        self.record.id, extra=self.log_extra(Event.COMPONENT_ERROR))
            if self.record.concurrency_key is not None:
                self._runner.key_freed(self.record.queue)
            return
        except BackendUnavailableError as exc:
            # The writer gave up at shutdown: the job stays held, and is rescued once this
            # engine is gone.
            logger.warning("the outcome of job %s (%s) could not be written before shutdown (%s); the job is "
                           "rescued once this engine is gone", self.record.id, decision.kind, exc,
                           extra=self.log_extra(Event.COMPONENT_ERROR))
            return
        except BackendError as exc:
            # The database refused this outcome itself: record a plain failed attempt instead.
            logger.error("the outcome of job %s (%s) could not be stored: %s; recording a failed attempt instead",
                         self.record.id, decision.kind, exc, extra=self.log_extra(Event.COMPONENT_ERROR))
            decision, outcome = self._outcome(Decision.failure(InternalError(
                f"the outcome of this attempt ({decision.kind}) could not be stored: {type(exc).__name__}")))
            accepted = await self._runner.writer.finish(outcome)
        self._to(RunState.DONE)
        self._release_slot()
        if self.record.concurrency_key is not None:
            self._runner.key_freed(self.record.queue)
        self._report(decision, accepted)
        if accepted and self.attempt_counted and decision.kind not in ("deferred", "handed_back") and self._hooks:
            await self._after(decision)

    def _outcome(self, decision: Decision) -> tuple[Decision, JobOutcome]:
        """The decision, settled (a failure retries or fails for good), and its row change."""
        counted = self.attempt_counted
        try:
            decision = settle_failure(decision, self.record, self._definition)
            return decision, outcome_for(self.record, decision, self._runner.engine_id, started=counted)
        except Exception as exc:  # a bug: still end the claim, as an engine failure
            logger.exception("the outcome of job %s could not be built", self.record.id,
                             extra=self.log_extra(Event.COMPONENT_ERROR))
            decision = settle_failure(self._engine_failure(exc), self.record, None)
            return decision, outcome_for(self.record, decision, self._runner.engine_id, started=counted)

    def _release_slot(self) -> None:
        if self._slot_held:
            self._slot_held = False
            self._runner.release_slot(self.record.queue)

    def _report(self, decision: Decision, accepted: bool) -> None:
        if not accepted:
            # A claim canceled before it started finds its job canceled already: nothing to say.
            quiet = decision.kind == "canceled" and not self.attempt_counted
            logger.log(
                logging.INFO if quiet else logging.WARNING,
                "outcome of job %s (%s) refused: its claim was taken away meanwhile (rescued, handed "
                "back or canceled); the job's current state stands", self.record.id, decision.kind,
                extra=self.log_extra(Event.JOB_OUTCOME_REFUSED),
            )
            return
        log_outcome(self.record, decision)
        self._runner.emit_outcome(self, decision, time.monotonic() - self._began if self._began else None)

    async def _after(self, decision: Decision) -> None:
        hooks, record, extra = self._hooks, self.record, self.log_extra()
        if decision.kind == "completed" and hooks.on_success:
            await run_hooks("on_success", hooks.on_success, record, decision.result, extra=extra)
        elif decision.kind == "failure" and decision.error is not None:
            await run_hooks("on_failure", hooks.on_failure, record, decision.error, extra=extra)
            if decision.exhausted:
                await run_hooks("on_max_attempts_exhausted", hooks.on_max_attempts_exhausted, record,
                                decision.error, extra=extra)
        if hooks.after_perform:
            await run_hooks("after_perform", hooks.after_perform, record, decision.kind, extra=extra)

    @property
    def mode(self) -> RunMode | None:
        return None if self._definition is None else self._definition.mode

    def log_extra(self, event: str = "") -> dict[str, object]:
        r = self.record
        return job_extra(event, r.id, r.name, r.queue, r.attempt)


def _consume(future: asyncio.Future[Any]) -> None:
    """Mark a body's error as retrieved (its outcome was decided by a stop)."""
    if future.done() and not future.cancelled():
        future.exception()


def _take_back_cancellation() -> None:
    """Undo every cancellation asked of this task (a stop's, or a stray one): the rest of the
    run must be able to await its outcome's write."""
    task = asyncio.current_task()
    while task is not None and task.cancelling():
        task.uncancel()
