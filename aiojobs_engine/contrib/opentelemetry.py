"""OpenTelemetry tracing: a span per attempt, joined to the trace that enqueued the job.

    pip install 'aiojobs_engine[otel]'

    from aiojobs_engine.contrib.opentelemetry import instrument
    instrument(engine)                       # the global tracer provider, or tracer_provider=...

- **At enqueue**, the current trace context is written into the job's ``meta`` as W3C
  ``traceparent``/``tracestate`` (an ``on_before_add`` hook), unless the meta given already
  has a ``traceparent``. Nothing is written when no span is current.
- **Each attempt** gets a span ``aiojobs.job <name>`` (kind CONSUMER), a child of the
  enqueuing span (or, with ``new_trace=True``, the root of a new trace, linked to it). It
  starts when the attempt starts (``job.started``) and ends with its outcome: attribute
  ``aiojobs.job.outcome`` (``completed``, ``retrying``, ``failed``, ``snoozed``,
  ``canceled``, ``deleted``, ``handed_back``, ``rescued``); a failed attempt records the
  exception and sets status ERROR.
- **Inside the job's body** the span is the current span (a context hook), so spans the job
  creates (HTTP clients, database drivers) nest under it. That holds for async jobs and for
  blocking jobs run in a thread. CPU-bound jobs run in another process: their span still
  covers the attempt as the engine sees it, but it is not current in the worker process
  (continue the trace there from ``current_job().record.meta["traceparent"]`` if needed).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Final

from .. import ConfigurationError, Engine, EventKind, JobEvent, JobRecord, JobRequest, __version__
from .._extras import missing_extra

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, TracerProvider
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    from opentelemetry.util.types import AttributeValue
except ImportError as exc:
    missing_extra(exc, module=__name__, extra="otel", packages={"opentelemetry"})

__all__ = ["TRACE_META_KEYS", "Instrumentation", "instrument"]

TRACE_META_KEYS: Final = ("traceparent", "tracestate")
"""The keys of a job's ``meta`` that carry the enqueuing trace context."""

_PROPAGATOR: Final = TraceContextTextMapPropagator()

_OUTCOMES: Final = {
    EventKind.JOB_COMPLETED: "completed",
    EventKind.JOB_RETRYING: "retrying",
    EventKind.JOB_FAILED: "failed",
    EventKind.JOB_SNOOZED: "snoozed",
    EventKind.JOB_CANCELED: "canceled",
    EventKind.JOB_DELETED: "deleted",
    EventKind.JOB_DEFERRED: "deferred",
    EventKind.JOB_HANDED_BACK: "handed_back",
    EventKind.JOB_RESCUED: "rescued",
}

_instrumented: weakref.WeakSet[Engine] = weakref.WeakSet()


class Instrumentation:
    """What ``instrument()`` set up on one engine; ``uninstrument()`` turns it off."""

    def __init__(self, engine: Engine, tracer: trace.Tracer, *, new_trace: bool) -> None:
        self._engine = engine
        self._tracer = tracer
        self._new_trace = new_trace
        self._spans: dict[tuple[int, int], Span] = {}  # (job id, attempt) -> the attempt's open span
        self._active = True
        engine.add_hook("on_before_add", self._inject)
        engine.add_context_hook(self._make_current)
        self._unsubscribe = engine.subscribe(self._on_event)

    def uninstrument(self) -> None:
        """Stop tracing this engine (its hooks stay registered but do nothing); open spans end."""
        if not self._active:
            return
        self._active = False
        self._unsubscribe()
        self._end_all("unknown")
        _instrumented.discard(self._engine)

    # -- enqueue ------------------------------------------------------------------------------

    def _inject(self, request: JobRequest) -> dict[str, str] | None:
        if not self._active or "traceparent" in (request.options.meta or {}):
            return None
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        return {key: carrier[key] for key in TRACE_META_KEYS if key in carrier} or None

    # -- attempts -----------------------------------------------------------------------------

    def _on_event(self, event: JobEvent) -> None:
        job = event.job
        if event.kind == EventKind.JOB_STARTED and job is not None:
            self._start(job, event)
        elif event.kind in _OUTCOMES and job is not None:
            span = self._spans.pop((job.id, job.attempt), None)
            if span is not None:
                _end(span, _OUTCOMES[event.kind], event.error)
        elif event.kind == EventKind.ENGINE_STOPPED:
            # Attempts whose outcome was refused (their claim was taken away) have no event.
            self._end_all("unknown")

    def _start(self, job: JobRecord, event: JobEvent) -> None:
        parent = _PROPAGATOR.extract(_trace_carrier(job.meta), context=otel_context.Context())
        links: list[Link] = []
        if self._new_trace:
            enqueuer = trace.get_current_span(parent).get_span_context()
            links = [Link(enqueuer)] if enqueuer.is_valid else []
            parent = otel_context.Context()
        attributes: dict[str, AttributeValue] = {
            "aiojobs.job.id": job.id,
            "aiojobs.job.name": job.name,
            "aiojobs.job.queue": job.queue,
            "aiojobs.job.attempt": job.attempt,
            "aiojobs.engine.id": event.engine_id or "",
            "messaging.system": "aiojobs",
            "messaging.operation.type": "process",
            "messaging.destination.name": job.queue,
            "messaging.message.id": str(job.id),
        }
        if event.queue_wait is not None:
            attributes["aiojobs.job.queue_wait"] = event.queue_wait
        span = self._tracer.start_span(f"aiojobs.job {job.name}", context=parent, kind=SpanKind.CONSUMER,
                                       attributes=attributes, links=links)
        stale = self._spans.pop((job.id, job.attempt), None)
        if stale is not None:
            _end(stale, "unknown", None)
        self._spans[(job.id, job.attempt)] = span

    def _make_current(self, record: JobRecord) -> None:
        """Runs in the attempt's own context, just before its body: make its span current."""
        span = self._spans.get((record.id, record.attempt)) if self._active else None
        if span is not None:
            # Attached in the attempt's private context, which ends with the body: no detach.
            otel_context.attach(trace.set_span_in_context(span))

    def _end_all(self, outcome: str) -> None:
        spans, self._spans = self._spans, {}
        for span in spans.values():
            _end(span, outcome, None)


def _trace_carrier(meta: Mapping[str, object]) -> dict[str, str]:
    return {key: value for key in TRACE_META_KEYS if isinstance(value := meta.get(key), str)}


def _end(span: Span, outcome: str, error: BaseException | None) -> None:
    span.set_attribute("aiojobs.job.outcome", outcome)
    if error is not None:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    span.end()


def instrument(engine: Engine, tracer_provider: TracerProvider | None = None, *,
               new_trace: bool = False) -> Instrumentation:
    """Trace ``engine``'s jobs (see the module's docstring). Call it once per engine, before
    it runs (at import time is fine: nothing is done until jobs are enqueued or run).

    ``tracer_provider``: default the global one. ``new_trace=True``: each attempt starts a
    new trace, linked to the enqueuing span, instead of continuing the enqueuing trace.
    """
    if not isinstance(engine, Engine):
        raise ConfigurationError(f"instrument() takes an aiojobs_engine.Engine, got {engine!r}")
    if engine in _instrumented:
        raise ConfigurationError("this engine is already instrumented for OpenTelemetry")
    tracer = trace.get_tracer("aiojobs_engine", __version__, tracer_provider)
    instrumentation = Instrumentation(engine, tracer, new_trace=new_trace)
    _instrumented.add(engine)
    return instrumentation
