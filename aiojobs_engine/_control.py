"""Signals a job raises to end its attempt on purpose.

    JobSignal      base; not an error (``AiojobsError`` is the base of errors)
    ├── Complete   record this result and finish
    ├── Fail       fail for good, without retrying
    ├── Retry      fail this attempt and run again later (uses an attempt)
    ├── Snooze     run again later without using an attempt
    ├── Cancel     stop for good, recorded as canceled
    └── Delete     remove the job from the database

Class jobs raise them through ``self.complete(...)`` and friends; function jobs through
``current_job().retry(...)`` or by raising them directly.
"""

from __future__ import annotations

from datetime import timedelta
from typing import NoReturn

from ._validation import MAX_DELAY, seconds_from


class JobSignal(Exception):
    """Base of the signals that end an attempt on purpose."""


class Complete(JobSignal):
    """Finish the job now with ``result`` (which must be JSON-serialisable)."""

    def __init__(self, result: object = None) -> None:
        super().__init__(result)
        self.result = result


class Fail(JobSignal):
    """Fail the job for good: no further attempt, whatever ``max_attempts`` says."""

    def __init__(self, reason: str = "failed by the job") -> None:
        super().__init__(reason)
        self.reason = reason


class Retry(JobSignal):
    """Fail this attempt and retry after ``delay`` seconds (default: the job's backoff).

    The attempt counts: after ``max_attempts`` the job fails for good.
    """

    def __init__(self, delay: float | timedelta | None = None, reason: str = "retry requested") -> None:
        super().__init__(reason)
        self.delay = None if delay is None else seconds_from(delay, "Retry delay", maximum=MAX_DELAY)
        self.reason = reason


class Snooze(JobSignal):
    """Put the job aside for ``delay`` seconds; the attempt is given back."""

    def __init__(self, delay: float | timedelta) -> None:
        self.delay = seconds_from(delay, "Snooze delay", maximum=MAX_DELAY)
        super().__init__(f"snoozed for {self.delay}s")


class Cancel(JobSignal):
    """Stop the job for good and record it as canceled."""

    def __init__(self, reason: str = "canceled by the job") -> None:
        super().__init__(reason)
        self.reason = reason


class Delete(JobSignal):
    """Remove the job from the database for good."""

    def __init__(self) -> None:
        super().__init__("deleted by the job")


class Transitions:
    """The in-job transitions as methods; mixed into ``Job`` and the ``current_job()`` context."""

    __slots__ = ()

    def complete(self, result: object = None) -> NoReturn:
        raise Complete(result)

    def fail(self, reason: str = "failed by the job") -> NoReturn:
        raise Fail(reason)

    def retry(self, delay: float | timedelta | None = None) -> NoReturn:
        raise Retry(delay)

    def snooze(self, delay: float | timedelta) -> NoReturn:
        raise Snooze(delay)

    def cancel(self, reason: str = "canceled by the job") -> NoReturn:
        raise Cancel(reason)

    def delete(self) -> NoReturn:
        raise Delete()
