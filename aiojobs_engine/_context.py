"""``current_job()``: the running attempt, reachable from anywhere in the job's code.

The context variable is set in the task (or thread, or worker process) that runs the body,
so concurrent jobs each see their own.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from ._control import Transitions
from ._errors import EngineStateError
from ._records import JobRecord


@dataclass(frozen=True, slots=True)
class JobContext(Transitions):
    """The running attempt: its record, and the in-job transitions as methods."""

    record: JobRecord
    engine_id: str

    @property
    def id(self) -> int:
        return self.record.id

    @property
    def attempt(self) -> int:
        return self.record.attempt


_current: ContextVar[JobContext | None] = ContextVar("aiojobs_current_job", default=None)


def current_job() -> JobContext:
    """The attempt running in this context; EngineStateError outside a job."""
    context = _current.get()
    if context is None:
        raise EngineStateError("current_job() was called outside a running job")
    return context


def set_current_job(context: JobContext | None) -> None:
    _current.set(context)
