"""Events: what happened to jobs and engines, for telemetry, metrics and integrations.

``engine.subscribe(listener)`` registers a plain function called with a ``JobEvent`` for
every event (``kinds=`` for only some), on the engine's loop (or the loop of the enqueuing
code). Listeners must be quick and must not block (hand slow work to a queue); one that
raises is logged and the event goes on to the others. An event of a kind no listener wants
is not even built: it costs one dict lookup.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from ._errors import ConfigurationError
from ._log import Event, logger
from ._records import JobRecord


class EventKind:
    """The ``kind`` of a ``JobEvent``."""

    JOB_ENQUEUED: Final = "job.enqueued"
    JOB_STARTED: Final = "job.started"  # an attempt's body is about to run
    JOB_COMPLETED: Final = "job.completed"
    JOB_FAILED: Final = "job.failed"  # failed for good
    JOB_RETRYING: Final = "job.retrying"  # an attempt failed; it runs again later
    JOB_SNOOZED: Final = "job.snoozed"
    JOB_CANCELED: Final = "job.canceled"
    JOB_DELETED: Final = "job.deleted"
    JOB_DEFERRED: Final = "job.deferred"  # okay_to_run put it off
    JOB_HANDED_BACK: Final = "job.handed_back"  # shutdown: back to waiting
    JOB_RESCUED: Final = "job.rescued"  # its engine died: back to waiting (or failed)
    ENGINE_STARTED: Final = "engine.started"
    ENGINE_STOPPED: Final = "engine.stopped"


ALL_KINDS: Final = frozenset(
    value for key, value in vars(EventKind).items() if not key.startswith("_") and isinstance(value, str)
)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobEvent:
    """Something that happened. ``job`` is the job's record as this engine last saw it."""

    kind: str
    at: datetime
    engine_id: str | None = None
    job: JobRecord | None = None
    duration: float | None = None  # seconds the attempt's body ran (outcomes of started attempts)
    queue_wait: float | None = None  # seconds from available_at to the start (job.started)
    error: BaseException | None = None  # the attempt's exception (job.failed, job.retrying)
    result: Any = None  # job.completed


Listener = Callable[[JobEvent], object]


class EventBus:
    """Listeners by the kinds they asked for: an event no listener wants is never built."""

    def __init__(self) -> None:
        self._subscriptions: tuple[tuple[Listener, frozenset[str]], ...] = ()
        self._by_kind: dict[str, tuple[Listener, ...]] = {}
        self._changing = threading.Lock()  # subscribe and unsubscribe may come from any thread

    def wants(self, kind: str) -> bool:
        """Does any listener want events of this kind? (Callers test it before building one.)"""
        return kind in self._by_kind

    def subscribe(self, listener: Listener, kinds: Iterable[str] | None = None) -> Callable[[], None]:
        """Add a listener, for every kind or only ``kinds``; returns a function that removes it."""
        if not callable(listener):
            raise ConfigurationError(f"an event listener must be callable, got {listener!r}")
        subscription = (listener, _checked_kinds(kinds))
        with self._changing:
            self._index((*self._subscriptions, subscription))

        def unsubscribe() -> None:  # this subscription only (the same listener may have others)
            with self._changing:
                self._index(tuple(s for s in self._subscriptions if s is not subscription))

        return unsubscribe

    def _index(self, subscriptions: tuple[tuple[Listener, frozenset[str]], ...]) -> None:
        self._subscriptions = subscriptions
        by_kind: dict[str, tuple[Listener, ...]] = {}
        for listener, kinds in subscriptions:
            for kind in kinds:
                by_kind[kind] = (*by_kind.get(kind, ()), listener)
        self._by_kind = by_kind

    def emit(self, event: JobEvent) -> None:
        for listener in self._by_kind.get(event.kind, ()):
            try:
                listener(event)
            except Exception:
                logger.exception("event listener %r failed on %s", listener, event.kind,
                                 extra={"event": Event.HOOK_FAILED, "hook": "event listener"})


def _checked_kinds(kinds: Iterable[str] | None) -> frozenset[str]:
    if kinds is None:
        return ALL_KINDS
    if isinstance(kinds, (str, bytes)):
        raise ConfigurationError(f"kinds must be a collection of event kinds, not one string: got {kinds!r} "
                                 f"(write kinds={{{kinds!r}}})")
    try:
        chosen = frozenset(kinds)
    except TypeError:
        raise ConfigurationError(f"kinds must be a collection of event kinds, got {kinds!r}") from None
    unknown = sorted(repr(k) for k in chosen - ALL_KINDS)
    if unknown:
        raise ConfigurationError(f"unknown event kind(s) {', '.join(unknown)}; known: {', '.join(sorted(ALL_KINDS))}")
    if not chosen:
        raise ConfigurationError("kinds is empty: the listener would never be called")
    return chosen
