"""The executor: runs each claimed job under a supervisor that alone writes its outcome.

For every claim the executor starts a supervisor task. The supervisor waits for what the
body needs (a thread slot, a worker process), marks the job running (batched with other
starts), launches the body — a task for async jobs, a thread for blocking ones, a worker
process for CPU-bound ones — and waits for the first of: the body ending, its timeout, a
cancellation, or a shutdown hand-back. It then writes exactly one fenced outcome.

Invariants:
- one outcome per claim, written by the supervisor; the body never writes;
- a body that ignores its timeout (swallows cancellation, blocks the loop, runs in a
  thread) is recorded as timed out and its late result discarded; its queue slot stays
  taken until the body really ends, so concurrency limits keep telling the truth;
- the queue slot is released only after the outcome is stored.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from .. import _json
from .._backends._protocol import JobOutcome, JobStart, StartedJob
from .._context import JobContext, set_current_job
from .._control import Cancel, Complete, Delete, Fail, JobSignal, Retry, Snooze
from .._definitions import JobDefinition, RunMode
from .._errors import JobTimeoutError, SerializationError, UnknownJobError
from .._hooks import run_hooks
from .._log import Event, job_extra, logger
from .._records import JobRecord, JobState
from ._batcher import Batcher
from ._outcomes import Decision, RemoteError, log_outcome, outcome_for, settle_failure
from ._pool_worker import record_to_json, signal_from_reply
from ._process_pool import ProcessPool
from ._queues import QueueManager
from ._services import Services

T = TypeVar("T")

STOP_GRACE = 2.0  # seconds a stopped body gets to end before it is abandoned
CANCEL = "cancel"
HAND_BACK = "hand_back"

Launch = Callable[[JobRecord, JobDefinition], "Body"]


@dataclass(eq=False)
class Run:
    """One claim, from its supervisor's start to its outcome."""

    record: JobRecord
    interrupt: asyncio.Future[str]
    started: bool = False
    decided: bool = False  # the outcome is chosen: interrupts no longer apply
    abandoned: asyncio.Future[None] | None = None  # a body that would not stop
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def interrupt_with(self, reason: str) -> bool:
        if self.decided or self.interrupt.done():
            return False
        self.interrupt.set_result(reason)
        return True


@dataclass(eq=False)
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
        workers = services.settings.thread_workers
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aiojobs-job")
        self._thread_slots = asyncio.Semaphore(workers)
        self._runs: dict[int, Run] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self.attempts_started = 0
        self._starter: Batcher[JobStart, StartedJob | None] = Batcher("starter", self._flush_starts)
        self._completer: Batcher[JobOutcome, bool] = Batcher("completer", self._flush_outcomes)

    # -- what the dispatcher and the engine see ------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._runs)

    def running_ids(self) -> list[int]:
        return list(self._runs)

    def submit(self, record: JobRecord) -> None:
        self._queues.acquire(record.queue)
        run = Run(record=record, interrupt=asyncio.get_running_loop().create_future())
        self._runs[record.id] = run
        self._idle.clear()
        run.task = asyncio.create_task(self._supervise(run), name=f"aiojobs-job-{record.id}")

    def cancel(self, job_id: int, token: str | None = None) -> bool:
        """Cancel a job this engine holds (``token`` None: whatever its claim)."""
        run = self._runs.get(job_id)
        if run is None or (token is not None and run.record.claim_token != token):
            return False
        return run.interrupt_with(CANCEL)

    async def wait_idle(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def hand_back_all(self) -> int:
        """Shutdown: every run not yet decided goes back to waiting, its attempt not charged."""
        runs = [run for run in self._runs.values() if run.interrupt_with(HAND_BACK)]
        supervisors = [run.task for run in runs if run.task is not None]
        if supervisors:
            await asyncio.wait(supervisors, timeout=STOP_GRACE + 5.0)
        return len(runs)

    async def close(self, timeout: float) -> None:
        await self._starter.close(timeout)
        await self._completer.close(timeout)
        self._threads.shutdown(wait=False, cancel_futures=True)

    # -- batched writes -------------------------------------------------------------------

    async def _flush_starts(self, starts: Sequence[JobStart]) -> list[StartedJob | None]:
        started = await self._s.backend.job_start_many(starts, now=self._s.clock.for_database())
        by_id = {s.id: s for s in started}
        return [by_id.get(start.id) for start in starts]

    async def _flush_outcomes(self, outcomes: Sequence[JobOutcome]) -> list[bool]:
        accepted = await self._s.backend.job_finish_many(outcomes, now=self._s.clock.for_database())
        return [outcome.id in accepted for outcome in outcomes]

    # -- the supervisor -------------------------------------------------------------------

    async def _supervise(self, run: Run) -> None:
        try:
            await self._attempt(run)
        except Exception:
            logger.exception(
                "supervisor of job %s failed; the job stays claimed until it is rescued", run.record.id,
                extra=self._extra(run, Event.COMPONENT_ERROR),
            )
        finally:
            if run.abandoned is not None:
                await asyncio.shield(run.abandoned)  # its slot is taken until the body ends
            self._runs.pop(run.record.id, None)
            self._on_slot_free(self._queues.release(run.record.queue))
            if not self._runs:
                self._idle.set()

    async def _attempt(self, run: Run) -> None:
        definition = self._s.registry.get(run.record.name)
        if definition is None:
            if await self._start(run):
                error = UnknownJobError(
                    f"no job named {run.record.name!r} is declared in engine {self._s.engine_id}; "
                    "does this worker run the same code as the enqueuer?"
                )
                await self._finish(run, None, Decision.failure(error, final=True))
            return
        deferral = await self._gate(run, definition)
        if deferral is not None:
            await self._finish(run, definition, Decision.deferred(deferral))
            return
        resource = await self._acquire(run, definition)
        if resource is None:
            await self._finish(run, definition, self._interrupted(run))
            return
        launch, release = resource
        launched = False
        try:
            if run.interrupt.done():
                await self._finish(run, definition, self._interrupted(run))
                return
            if not await self._start(run):
                return
            await run_hooks("before_perform", self._s.hooks.before_perform + definition.hooks.before_perform,
                            run.record, extra=self._extra(run))
            began = time.monotonic()
            body = launch(run.record, definition)
            launched = True
            body.future.add_done_callback(lambda _: release())
            decision = await self._watch(run, body, began)
            await self._finish(run, definition, decision)
        finally:
            if not launched:
                release()

    async def _acquire(self, run: Run, definition: JobDefinition) -> tuple[Launch, Callable[[], None]] | None:
        """What the body needs before it may start; None if interrupted while waiting."""
        if definition.mode is RunMode.INLINE:
            return self._launch_inline, _nothing
        if definition.mode is RunMode.THREAD:
            slots = self._thread_slots
            if await self._interruptible(run, slots.acquire(), lambda _: slots.release()) is None:
                return None
            return self._launch_thread, slots.release
        pool = self._pool
        worker = await self._interruptible(run, pool.acquire(), pool.release)
        if worker is None:
            return None
        return functools.partial(self._launch_process, worker), functools.partial(pool.release, worker)

    async def _interruptible(self, run: Run, acquire: Awaitable[T], undo: Callable[[T], None]) -> T | None:
        waiter = asyncio.ensure_future(acquire)
        waiting: set[asyncio.Future[Any]] = {waiter, run.interrupt}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if not run.interrupt.done():
            return waiter.result()
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        if not waiter.cancelled() and waiter.exception() is None:
            undo(waiter.result())  # acquired at the very moment of the interrupt
        return None

    def _interrupted(self, run: Run) -> Decision:
        if run.interrupt.result() == CANCEL:
            return Decision.canceled("canceled before it started")
        return Decision.handed_back()

    async def _start(self, run: Run) -> bool:
        started = await self._starter.submit(JobStart(run.record.id, run.record.claim_token or ""))
        if started is None:
            run.decided = True
            logger.info(
                "job %s was taken away before it started (canceled or rescued meanwhile)", run.record.id,
                extra=self._extra(run, Event.JOB_OUTCOME_REFUSED),
            )
            return False
        run.started = True
        run.record = replace(run.record, state=JobState.RUNNING, attempt=started.attempt,
                             attempted_at=started.attempted_at)
        self.attempts_started += 1
        return True

    async def _watch(self, run: Run, body: Body, began: float) -> Decision:
        timeout = run.record.timeout
        done, _ = await asyncio.wait({body.future, run.interrupt}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        run.decided = True
        if body.future in done and not run.interrupt.done():
            elapsed = time.monotonic() - began
            if timeout is not None and elapsed > timeout:
                # It ended, but after its deadline: it blocked the event loop, so the timeout
                # could not interrupt it. Its result is void.
                _consume(body.future)
                return Decision.failure(JobTimeoutError(
                    f"ran {elapsed:.1f}s, past its timeout of {timeout:g}s, blocking the event loop; "
                    "its result was discarded"
                ))
            return _decide(body)
        reason = run.interrupt.result() if run.interrupt.done() else "timeout"
        body.stop()
        ended, _ = await asyncio.wait({body.future}, timeout=STOP_GRACE if body.stoppable else 0)
        if ended:
            _consume(body.future)
        else:
            run.abandoned = asyncio.ensure_future(_settle(body.future))
            logger.warning(
                "job %s did not stop when told to (%s): %s; its slot stays taken until it ends",
                run.record.id, reason,
                "it ignores cancellation or blocks" if body.stoppable else "a thread cannot be stopped",
                extra=self._extra(run, Event.JOB_TIMEOUT_IGNORED),
            )
        if reason == CANCEL:
            return Decision.canceled("canceled while running")
        if reason == HAND_BACK:
            return Decision.handed_back()
        return Decision.failure(JobTimeoutError(f"timed out after {timeout:g}s"))

    async def _finish(self, run: Run, definition: JobDefinition | None, decision: Decision) -> None:
        run.decided = True
        decision = settle_failure(decision, run.record, definition)
        outcome = outcome_for(run.record, decision, self._s.engine_id, started=run.started)
        accepted = await self._completer.submit(outcome)
        extra = self._extra(run)
        if not accepted:
            logger.warning(
                "outcome of job %s (%s) refused: its claim was taken away meanwhile (rescued, handed "
                "back or canceled); the job's current state stands", run.record.id, decision.kind,
                extra={**extra, "event": Event.JOB_OUTCOME_REFUSED},
            )
            return
        log_outcome(run.record, decision, extra)
        if run.started and decision.kind not in ("deferred", "handed_back"):
            await self._after(run, definition, decision, extra)

    async def _after(self, run: Run, definition: JobDefinition | None, decision: Decision,
                     extra: dict[str, object]) -> None:
        hooks = self._s.hooks if definition is None else self._s.hooks.then(definition.hooks)
        record = run.record
        if decision.kind == "completed":
            await run_hooks("on_success", hooks.on_success, record, decision.result, extra=extra)
        elif decision.kind == "failure" and decision.error is not None:
            await run_hooks("on_failure", hooks.on_failure, record, decision.error, extra=extra)
            if decision.exhausted:
                await run_hooks("on_max_attempts_exhausted", hooks.on_max_attempts_exhausted, record,
                                decision.error, extra=extra)
        await run_hooks("after_perform", hooks.after_perform, record, decision.kind, extra=extra)

    async def _gate(self, run: Run, definition: JobDefinition) -> float | None:
        """Ask the okay_to_run hooks: seconds to defer the job by, or None to run it."""
        hooks = self._s.hooks.okay_to_run + definition.hooks.okay_to_run
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
        return context

    def _launch_inline(self, record: JobRecord, definition: JobDefinition) -> Body:
        task = asyncio.get_running_loop().create_task(
            _call(definition, record), name=f"aiojobs-body-{record.id}", context=self._context_for(record)
        )
        return Body(task, lambda: _nothing(task.cancel()), stoppable=True)

    def _launch_thread(self, record: JobRecord, definition: JobDefinition) -> Body:
        call = functools.partial(self._context_for(record).run, _call_blocking, definition, record)
        future = asyncio.get_running_loop().run_in_executor(self._threads, call)
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


async def _settle(future: asyncio.Future[Any]) -> None:
    await asyncio.wait({future})  # the outcome is already recorded; this only waits for the end
    _consume(future)


def _consume(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception as retrieved (its outcome was decided another way)."""
    if future.done() and not future.cancelled():
        future.exception()
