"""The runner: the runs in flight (by claim token), what they share, and the few ways to
reach them from outside.

Owns: starting a run for each job the producer claims (one task each, named for the job),
the thread slots blocking bodies take, the hook chain of each job definition, the count of
bodies running per job (a job whose earlier body still runs here is not started twice), and
the outside verbs: cancel, let go (its claim was taken away), stop all (revived), hand back
all (shutdown), report runs whose body should have ended and has not.

May call: the runs (``Run.stop``, ``Run.abandon``, ``Run.overdue``); the writer and pool
it hands to them; the producer's ``release_slot`` and ``capped``; the event bus.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from .._backends._protocol import JobStart
from .._definitions import JobDefinition, RunMode
from .._events import EventKind, JobEvent
from .._hooks import Hooks
from .._log import Event, job_extra, logger
from .._records import JobRecord, JobState
from ._outcomes import Decision
from ._process_pool import ProcessPool
from ._run import Run, RunState, Stop
from ._services import Services
from ._writer import Writer


class Runner:
    """The runs in flight, what they share, and the few ways to reach them from outside."""

    def __init__(self, services: Services, writer: Writer, pool: ProcessPool, *,
                 release_slot: Callable[[str], None], capped: Callable[[str], bool],
                 key_freed: Callable[[str], None], on_idle: Callable[[], None]) -> None:
        self._s = services
        self.writer = writer
        self.pool = pool
        self.release_slot = release_slot  # the producer's: a run gives its queue slot back
        self.capped = capped  # the producer's: does a global cap count this queue's claims?
        self.key_freed = key_freed  # the producer's: a keyed job's outcome is stored (its key has room)
        self._on_idle = on_idle  # the producer's wake-up: a draining producer waits for idleness
        self.closing = False  # the end of shutdown: runs still here are torn down
        self.thread_slots = asyncio.Semaphore(services.settings.thread_workers)
        self.engine_id = services.engine_id
        self._runs: dict[str, Run] = {}
        self._bodies: dict[int, int] = {}  # job id -> its bodies running here (two only after a claim was lost)
        self._hooks: dict[str, Hooks] = {}
        self._loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._idle.set()
        self._warned: set[str] = set()  # tokens of runs reported overdue
        self.attempts_started = 0

    # -- from the producer ----------------------------------------------------------------------

    def start(self, record: JobRecord) -> None:
        """Live the claim of ``record`` (its queue slot already taken)."""
        run = Run(self, record, self._s.registry.get(record.name))
        token = run.token
        self._runs[token] = run
        self._idle.clear()
        if record.state is JobState.RUNNING:  # started by the claim itself
            self.note_started(run)
        run.task = self._loop.create_task(run.life(), name=f"aiojobs-job-{record.id}")

    def starts_at_once(self, definition: JobDefinition) -> bool:
        """Can a claim of this job start it at once (an async body, no okay_to_run hook)?"""
        return definition.mode is RunMode.INLINE and not self.hooks_for(definition).okay_to_run

    # -- what runs share -----------------------------------------------------------------------------

    def hooks_for(self, definition: JobDefinition | None) -> Hooks:
        if definition is None:
            return self._s.hooks
        hooks = self._hooks.get(definition.name)
        if hooks is None:
            hooks = self._hooks[definition.name] = self._s.hooks.then(definition.hooks)
        return hooks

    def run_context_hooks(self, record: JobRecord) -> None:
        for hook in self._s.context_hooks:
            try:
                hook(record)
            except Exception:
                logger.exception("context hook %r failed", hook,
                                 extra={**job_extra(Event.HOOK_FAILED, record.id, record.name, record.queue,
                                                    record.attempt), "hook": "context"})

    def body_running(self, job_id: int) -> bool:
        """Does a body of this job run here (a run whose claim was taken away, still ending)?"""
        return job_id in self._bodies

    def body_began(self, job_id: int) -> None:
        self._bodies[job_id] = self._bodies.get(job_id, 0) + 1

    def body_ended(self, job_id: int) -> None:
        left = self._bodies.pop(job_id) - 1
        if left:
            self._bodies[job_id] = left

    def note_started(self, run: Run) -> None:
        """A run's attempt began counting (by its claim, or its start's write)."""
        self.attempts_started += 1
        if self._s.events.wants(EventKind.JOB_STARTED) and run.record.attempted_at is not None:
            wait = (run.record.attempted_at - run.record.available_at).total_seconds()
            self._emit(EventKind.JOB_STARTED, run.record, queue_wait=max(0.0, wait))

    def emit_outcome(self, run: Run, decision: Decision, duration: float | None) -> None:
        kind = _event_kind(decision)
        if self._s.events.wants(kind):
            self._emit(kind, run.record, error=decision.error, result=decision.result, duration=duration)

    def _emit(self, kind: str, record: JobRecord, **fields: Any) -> None:
        self._s.events.emit(JobEvent(kind=kind, at=self._s.clock.now(), engine_id=self.engine_id, job=record,
                                     **fields))

    def forget(self, run: Run) -> None:
        if self._runs.pop(run.token, None) is None:
            return
        self._warned.discard(run.token)
        if not self._runs:
            self._idle.set()
            self._on_idle()

    # -- from outside: the engine, the notifier, recovery, the runtime -------------------------------

    @property
    def in_flight(self) -> int:
        """Claims whose outcome is not stored yet."""
        return len(self._runs)

    def tokens(self) -> set[str]:
        return set(self._runs)

    def undecided_claims(self) -> list[JobStart]:
        """Claims whose outcome is not chosen yet (what a cancellation could still stop)."""
        return [JobStart(run.record.id, run.token) for run in self._runs.values()
                if run.state in (RunState.CLAIMED, RunState.RUNNING, RunState.STOPPING)]

    def cancel(self, job_id: int) -> bool:
        """Stop the runs of ``job_id`` here: their outcome is ``canceled``."""
        runs = [run for run in self._runs.values() if run.record.id == job_id]
        for run in runs:
            run.stop(Stop.CANCEL)
        return bool(runs)

    def let_go(self, job_id: int, token: str) -> None:
        """The claim was taken away from this engine: stop its run. Whatever it writes is
        refused by fencing; the job's current state stands."""
        run = self._runs.get(token)
        if run is None or run.record.id != job_id or run.stop_reason is not None:
            return
        if run.state in (RunState.CLAIMED, RunState.RUNNING):
            logger.warning("job %s was taken away from this engine while it ran (rescued, replaced, canceled, "
                           "retried or deleted elsewhere, or its claim undone by a database crash); stopping its run",
                           job_id, extra=run.log_extra(Event.JOB_OUTCOME_REFUSED))
            run.stop(Stop.HAND_BACK)

    def stop_all(self) -> int:
        """Every run not yet decided stops and hands its job back (its claim is void: revived)."""
        runs = [run for run in self._runs.values() if run.stop_reason is None]
        for run in runs:
            run.stop(Stop.HAND_BACK)
        return len(runs)

    async def hand_back_all(self, timeout: float) -> int:
        """Shutdown: every run not decided yet hands its job back now (or records it as timed
        out, if its deadline passed), its body stopped or left behind; wait (up to ``timeout``)
        until those outcomes are written."""
        runs = [run for run in self._runs.values() if run.state not in (RunState.DECIDED, RunState.DONE)]
        for run in runs:
            run.stop(Stop.HAND_BACK)
        writes = [task for run in runs if (task := run.abandon()) is not None]
        pending = writes + [run.task for run in runs if run.task is not None and run.state is RunState.CLAIMED]
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        return len(runs)

    async def wait_idle(self) -> None:
        await self._idle.wait()

    def report_overdue(self) -> None:
        """Log, once per run, a body that should have ended by now and has not."""
        now = time.monotonic()
        for token, run in list(self._runs.items()):
            why = run.overdue(now)
            if why is None or token in self._warned:
                continue
            self._warned.add(token)
            how = ("a thread cannot be stopped" if run.mode is RunMode.THREAD
                   else "it ignores cancellation or blocks the event loop")
            logger.warning("job %s did not stop when told to (%s): %s; its job stays running here, and keeps "
                           "its slot, until it ends", run.record.id, why, how,
                           extra=run.log_extra(Event.JOB_TIMEOUT_IGNORED))

    def jobs_of_task(self, task: asyncio.Task[Any] | None) -> list[JobRecord]:
        """The job whose run is ``task`` (may be called from another thread)."""
        if task is None:
            return []
        try:
            return [run.record for run in list(self._runs.values()) if run.task is task]
        except RuntimeError:  # changed while read from another thread
            return []

    async def close(self, timeout: float) -> None:
        """Cancel what is left: runs whose body would not stop (their outcome is written
        already) and runs whose outcome could not be written (rescued later). A body that
        swallows even this is left behind after ``timeout``: the process is about to exit."""
        self.closing = True
        leftovers = [run.task for run in self._runs.values() if run.task is not None and not run.task.done()]
        for task in leftovers:
            task.cancel()
        if leftovers:
            await asyncio.wait(leftovers, timeout=timeout)


def _event_kind(decision: Decision) -> str:
    if decision.kind == "failure":
        return EventKind.JOB_FAILED if decision.final else EventKind.JOB_RETRYING
    return {
        "completed": EventKind.JOB_COMPLETED, "snoozed": EventKind.JOB_SNOOZED,
        "canceled": EventKind.JOB_CANCELED, "deleted": EventKind.JOB_DELETED,
        "deferred": EventKind.JOB_DEFERRED, "handed_back": EventKind.JOB_HANDED_BACK,
    }[decision.kind]
