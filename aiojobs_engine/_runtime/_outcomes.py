"""How an attempt ended (a ``Decision``) and the fenced write that records it (a ``JobOutcome``).

Pure functions: a run's body ends with a value, an error, a signal or a worker's reply; this
module says what that decides, and turns the decision into the row change, the retry delay
and the log line.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, replace
from typing import Any, Literal

from .. import _json
from .._backends._protocol import JobOutcome
from .._control import Cancel, Complete, Delete, Fail, JobSignal, Retry, Snooze
from .._definitions import JobDefinition
from .._errors import JobTimeoutError, SerializationError, UnknownJobError, WorkerCrashedError
from .._log import Event, job_extra, logger
from .._records import JobRecord, JobState
from .._retry import DEFAULT_BACKOFF, BackoffPolicy, backoff_from_json
from ._pool_worker import signal_from_reply

Kind = Literal["completed", "failure", "snoozed", "canceled", "deleted", "deferred", "handed_back"]


class RemoteError(Exception):
    """An exception raised in a worker process, carried back by name, message and traceback."""

    def __init__(self, name: str, message: str, remote_traceback: str | None) -> None:
        super().__init__(message)
        self.remote_name = name
        self.remote_traceback = remote_traceback


@dataclass(slots=True)
class Decision:
    """How an attempt ended (built once per attempt and never changed; not frozen, as the other
    hot-path values: docs/decisions/2026-11-23-hot-path-dataclasses-not-frozen.md)."""

    kind: Kind
    result_json: str | None = None
    result: Any = None
    error: BaseException | None = None
    final: bool = False  # a failure that must not be retried
    exhausted: bool = False  # failed for good because the attempts ran out
    delay: float | None = None  # retry / snooze / deferral delay in seconds
    reason: str | None = None

    @classmethod
    def completed(cls, result_json: str, result: Any) -> Decision:
        return cls("completed", result_json=result_json, result=result)

    @classmethod
    def failure(cls, error: BaseException, *, final: bool = False, delay: float | None = None) -> Decision:
        return cls("failure", error=error, final=final, delay=delay)

    @classmethod
    def snoozed(cls, delay: float) -> Decision:
        return cls("snoozed", delay=delay)

    @classmethod
    def canceled(cls, reason: str) -> Decision:
        return cls("canceled", reason=reason)

    @classmethod
    def deleted(cls) -> Decision:
        return cls("deleted")

    @classmethod
    def deferred(cls, delay: float) -> Decision:
        return cls("deferred", delay=delay)

    @classmethod
    def handed_back(cls) -> Decision:
        # No delay: the job keeps its available_at, so it runs before newer jobs of its priority.
        return cls("handed_back")

    @property
    def retrying(self) -> bool:
        return self.kind == "failure" and not self.final


MAX_DELAY = 10 * 365 * 86_400.0  # ten years: anything later is a bug, and would overflow storage


def settle_failure(decision: Decision, record: JobRecord, definition: JobDefinition | None) -> Decision:
    """A failure either retries after a backoff delay or, attempts spent, fails for good."""
    if decision.kind != "failure" or decision.final:
        return decision
    if record.attempt >= record.max_attempts:
        return replace(decision, final=True, exhausted=True)
    delay = decision.delay
    if delay is None:
        policy = backoff_for(record, definition)
        try:
            delay = policy.delay(record.attempt)
        except Exception:
            logger.exception("the backoff policy of job %s failed; using the default one", record.name,
                             extra={"event": Event.COMPONENT_ERROR, "job_id": record.id})
            delay = DEFAULT_BACKOFF.delay(record.attempt)
    return replace(decision, delay=clamp_delay(delay))


def clamp_delay(delay: float | None) -> float | None:
    """A storable delay: not negative, not NaN, at most ``MAX_DELAY``."""
    if delay is None:
        return None
    if not delay >= 0:  # negative or NaN
        return 0.0
    return min(delay, MAX_DELAY)


def backoff_for(record: JobRecord, definition: JobDefinition | None) -> BackoffPolicy:
    """The policy set at enqueue, else the declared one, else exponential with jitter."""
    return backoff_from_json(record.retry) or (definition.retry if definition else None) or DEFAULT_BACKOFF


def outcome_for(record: JobRecord, decision: Decision, engine_id: str, *, started: bool) -> JobOutcome:
    """The fenced row change that records ``decision``."""
    was = JobState.RUNNING if started else JobState.CLAIMED
    kind = decision.kind
    if kind == "completed":  # nearly every outcome: built directly, with no keyword dict
        return JobOutcome(id=record.id, token=record.claim_token or "", from_state=was, state=JobState.COMPLETED,
                          result_json=decision.result_json)
    base: dict[str, Any] = {"id": record.id, "token": record.claim_token or "", "from_state": was}
    if kind == "failure":
        assert decision.error is not None
        error = error_json(decision.error, record, engine_id)
        if decision.final:
            return JobOutcome(**base, state=JobState.FAILED, error_json=error)
        return JobOutcome(**base, state=JobState.WAITING, error_json=error, delay=decision.delay)
    if kind == "snoozed":
        return JobOutcome(**base, state=JobState.SNOOZED, delay=clamp_delay(decision.delay),
                          give_back_attempt=started)
    if kind == "canceled":
        return JobOutcome(**base, state=JobState.CANCELED, error_json=_entry_json(
            "Canceled", decision.reason or "canceled", None, record, engine_id))
    if kind == "deleted":
        return JobOutcome(**base, state=JobState.COMPLETED, delete=True)
    # deferred (never started) or handed back (its attempt is given back, its place in line kept)
    return JobOutcome(**base, state=JobState.WAITING, delay=clamp_delay(decision.delay),
                      give_back_attempt=started)


# -- what a body's end decides ---------------------------------------------------------------


def decision_for_result(result: object) -> Decision:
    """The body returned ``result``: completed, unless the value cannot be stored as JSON."""
    if result is None:
        return Decision.completed("null", None)
    try:
        return Decision.completed(_json.dumps(result, "the job's return value"), result)
    except SerializationError as error:
        return Decision.failure(error, final=True)


def decision_for_error(exc: BaseException) -> Decision:
    """The body raised ``exc``: a signal says how the attempt ends, anything else is a failure."""
    if isinstance(exc, JobSignal):
        return decision_for_signal(exc)
    return Decision.failure(exc)


def decision_for_signal(sig: JobSignal) -> Decision:
    if isinstance(sig, Complete):
        return decision_for_result(sig.result)
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


def decision_for_reply(reply: dict[str, Any]) -> Decision:
    """A worker process's reply (see ``_pool_worker.run_task``), as a decision."""
    kind = reply.get("kind")
    if kind == "ok":
        return Decision.completed(reply["result"], _json.loads(reply["result"]))
    if kind == "signal":
        return decision_for_signal(signal_from_reply(reply))
    error = RemoteError(reply.get("name", "Error"), reply.get("message", ""), reply.get("traceback"))
    return Decision.failure(error, final=bool(reply.get("final")))


def unrunnable(record: JobRecord, definition: JobDefinition | None, engine_id: str) -> Exception | None:
    """Why this job cannot run here at all (it fails for good), or None."""
    if record.corrupt is not None:
        return SerializationError(f"the stored job could not be read: {record.corrupt}")
    if definition is None:
        return UnknownJobError(
            f"no job named {record.name!r} is declared in engine {engine_id}; "
            "does this worker run the same code as the enqueuer?"
        )
    return None


# -- the stored error -------------------------------------------------------------------------


def error_json(exc: BaseException, record: JobRecord, engine_id: str) -> str:
    name, message, trace = describe(exc)
    return _entry_json(name, message, trace, record, engine_id)


def _entry_json(name: str, message: str, trace: str | None, record: JobRecord, engine_id: str) -> str:
    storable = _json.text_for_storage
    return _json.dumps({
        "name": storable(name),
        "message": storable(message),
        "traceback": None if trace is None else storable(trace),
        "attempt": record.attempt,
        "attempted_by": engine_id,
        "attempted_at": record.attempted_at.isoformat() if record.attempted_at else None,
    }, "error")


_MAX_TRACEBACK = 32_000
_OWN_ERRORS = (JobSignal, JobTimeoutError, WorkerCrashedError, UnknownJobError, SerializationError)


def describe(exc: BaseException) -> tuple[str, str, str | None]:
    """Name, message and traceback of an attempt's error (our own errors need no traceback)."""
    if isinstance(exc, RemoteError):
        return exc.remote_name, str(exc), exc.remote_traceback
    message = _message(exc)
    if isinstance(exc, _OWN_ERRORS):
        return type(exc).__name__, message, None
    try:
        trace = "".join(traceback.format_exception(exc))
    except Exception:  # an exception whose __str__ or frames misbehave
        trace = None
    if trace is None:
        return type(exc).__name__, message, None
    if len(trace) > _MAX_TRACEBACK:
        trace = trace[:1000] + "\n…\n" + trace[-(_MAX_TRACEBACK - 1000):]
    return type(exc).__name__, message, trace  # never str(exc) again: its __str__ may raise


def _message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__} whose message could not be read>"


def log_outcome(record: JobRecord, decision: Decision) -> None:
    """One line per outcome: INFO when things went to plan, WARNING/ERROR with the traceback."""
    kind = decision.kind
    level = logging.INFO if kind != "failure" else logging.ERROR if decision.final else logging.WARNING
    if not logger.isEnabledFor(level):
        return
    extra = job_extra("", record.id, record.name, record.queue, record.attempt)
    if kind == "completed":
        logger.info("job %s (%s) completed", record.id, record.name, extra={**extra, "event": Event.JOB_COMPLETED})
    elif kind == "failure":
        assert decision.error is not None
        name, message, _ = describe(decision.error)
        if decision.final:
            level, event, what = logging.ERROR, Event.JOB_FAILED, "failed for good"
        else:
            level, event, what = logging.WARNING, Event.JOB_RETRYING, f"failed; retrying in {decision.delay:.1f}s"
        exc_info = None if isinstance(decision.error, (*_OWN_ERRORS, RemoteError)) else decision.error
        logger.log(level, "job %s (%s) attempt %s %s: %s: %s", record.id, record.name, record.attempt, what,
                   name, message, exc_info=exc_info, extra={**extra, "event": event})
    else:
        event = {
            "snoozed": Event.JOB_SNOOZED, "canceled": Event.JOB_CANCELED, "deleted": Event.JOB_DELETED,
            "deferred": Event.JOB_DEFERRED, "handed_back": Event.JOB_HANDED_BACK,
        }[kind]
        logger.info("job %s (%s) %s", record.id, record.name, kind.replace("_", " "), extra={**extra, "event": event})
