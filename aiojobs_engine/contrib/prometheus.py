"""Prometheus metrics: jobs enqueued and attempt outcomes, queue wait and run time, jobs per state.

    pip install 'aiojobs_engine[prometheus]'

    from aiojobs_engine.contrib.prometheus import instrument
    instrument(engine)                       # on prometheus_client's default registry

    prometheus_client.start_http_server(9100)            # a /metrics endpoint of its own, or
    app.mount("/metrics", prometheus_client.make_asgi_app())   # in a FastAPI/Starlette app

Metrics (labels in braces):

- ``aiojobs_jobs_enqueued_total{queue, job}``: jobs enqueued by this process (cron ticks included);
- ``aiojobs_job_outcomes_total{queue, job, outcome}``: attempts ended by this process's engine,
  by outcome: ``completed``, ``retrying``, ``failed``, ``snoozed``, ``canceled``, ``deleted``,
  ``deferred``, ``handed_back``, and ``rescued`` (jobs of dead engines this engine's reaper
  returned to waiting or failed);
- ``aiojobs_job_queue_wait_seconds{queue, job}``: histogram, from a job's ``available_at`` to
  the start of its attempt;
- ``aiojobs_job_duration_seconds{queue, job}``: histogram, how long attempt bodies ran;
- ``aiojobs_jobs{queue, state}``: gauge, jobs in the database per queue and state, from a
  snapshot that a small task refreshes every ``refresh_interval`` seconds while the engine
  is at work (and ``await metrics.refresh()`` on demand); scraping never touches the database;
- ``aiojobs_jobs_refreshed_timestamp_seconds``: when that snapshot was taken (alert on its age).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import Final

from .. import ConfigurationError, Engine, EventKind, JobEvent, JobState
from .._extras import missing_extra

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector
except ImportError as exc:
    missing_extra(exc, module=__name__, extra="prometheus", packages={"prometheus_client"})

__all__ = ["DEFAULT_BUCKETS", "PrometheusInstrumentation", "instrument"]

logger: Final = logging.getLogger("aiojobs_engine.contrib.prometheus")

DEFAULT_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                          600.0, 1800.0, 3600.0, float("inf"))
"""Histogram buckets in seconds: from milliseconds to an hour (jobs run longer than requests)."""

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


class _StateCollector(Collector):
    """``aiojobs_jobs{queue, state}`` from the last snapshot: no I/O at scrape time."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, JobState], int] = {}
        self.queues: set[str] = set()  # every queue seen, so a queue that empties reports zeros
        self.refreshed_at: float | None = None

    def update(self, counts: dict[tuple[str, JobState], int]) -> None:
        self.counts = dict(counts)
        self.queues |= {queue for queue, _ in counts}
        self.refreshed_at = time.time()

    def collect(self) -> Iterable[Metric]:
        if self.refreshed_at is None:
            return
        jobs = GaugeMetricFamily("aiojobs_jobs", "Jobs in the database, per queue and state (a periodic snapshot)",
                                 labels=["queue", "state"])
        for queue in sorted(self.queues):
            for state in JobState:
                jobs.add_metric([queue, state.value], self.counts.get((queue, state), 0))
        yield jobs
        yield GaugeMetricFamily("aiojobs_jobs_refreshed_timestamp_seconds",
                                "When the aiojobs_jobs snapshot was taken (Unix time)", value=self.refreshed_at)


class _Metrics:
    """The metrics of one registry (shared by every engine instrumented on it)."""

    def __init__(self, registry: CollectorRegistry, buckets: Sequence[float]) -> None:
        self.enqueued = Counter("aiojobs_jobs_enqueued", "Jobs enqueued", ["queue", "job"], registry=registry)
        self.outcomes = Counter("aiojobs_job_outcomes", "Attempts ended, by outcome", ["queue", "job", "outcome"],
                                registry=registry)
        self.queue_wait = Histogram("aiojobs_job_queue_wait_seconds",
                                    "Seconds from a job's available_at to the start of its attempt",
                                    ["queue", "job"], registry=registry, buckets=buckets)
        self.duration = Histogram("aiojobs_job_duration_seconds", "Seconds an attempt's body ran",
                                  ["queue", "job"], registry=registry, buckets=buckets)
        self.states = _StateCollector()
        registry.register(self.states)
        self.engines: weakref.WeakSet[Engine] = weakref.WeakSet()  # instrumented here: each at most once


_registries: weakref.WeakKeyDictionary[CollectorRegistry, _Metrics] = weakref.WeakKeyDictionary()


class PrometheusInstrumentation:
    """What ``instrument()`` set up on one engine."""

    def __init__(self, engine: Engine, metrics: _Metrics, refresh_interval: float) -> None:
        self._engine = engine
        self._metrics = metrics
        self._refresh_interval = refresh_interval
        self._refresher: asyncio.Task[None] | None = None
        self._unsubscribe = engine.subscribe(self._on_event)
        metrics.engines.add(engine)

    async def refresh(self) -> None:
        """Read the job counts per queue and state now (the engine must be open)."""
        self._metrics.states.update(await self._engine.count_jobs())

    def uninstrument(self) -> None:
        """Stop updating the metrics from this engine (they stay registered); it may be
        instrumented again afterwards."""
        self._unsubscribe()
        self._stop_refreshing()
        self._metrics.engines.discard(self._engine)

    def _on_event(self, event: JobEvent) -> None:
        job, kind, metrics = event.job, event.kind, self._metrics
        if job is not None:
            if kind == EventKind.JOB_ENQUEUED:
                metrics.enqueued.labels(job.queue, job.name).inc()
            elif kind == EventKind.JOB_STARTED:
                if event.queue_wait is not None:
                    metrics.queue_wait.labels(job.queue, job.name).observe(event.queue_wait)
            elif kind in _OUTCOMES:
                metrics.outcomes.labels(job.queue, job.name, _OUTCOMES[kind]).inc()
                if event.duration is not None:
                    metrics.duration.labels(job.queue, job.name).observe(event.duration)
        elif kind == EventKind.ENGINE_STARTED:
            self._stop_refreshing()
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_periodically(),
                                                                     name="aiojobs-prometheus-refresh")
        elif kind == EventKind.ENGINE_STOPPED:
            self._stop_refreshing()

    def _stop_refreshing(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None

    async def _refresh_periodically(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:
                logger.warning("could not refresh the aiojobs_jobs gauge: %s: %s", type(exc).__name__, exc,
                               extra={"event": "component.error", "component": "prometheus"})
            await asyncio.sleep(self._refresh_interval)


def instrument(engine: Engine, registry: CollectorRegistry | None = None, *, refresh_interval: float = 15.0,
               buckets: Sequence[float] = DEFAULT_BUCKETS) -> PrometheusInstrumentation:
    """Count ``engine``'s jobs into ``registry`` (default: prometheus_client's ``REGISTRY``).

    Several engines may share a registry (their counts add up; the ``aiojobs_jobs`` gauge
    shows the newest snapshot, so they should share a database too). ``buckets`` apply the
    first time a registry is instrumented. Call it once per engine and registry: a second
    call would count everything twice, so it raises ``ConfigurationError`` (``uninstrument()``
    first to instrument the engine anew).
    """
    if not isinstance(engine, Engine):
        raise ConfigurationError(f"instrument() takes an aiojobs_engine.Engine, got {engine!r}")
    if not refresh_interval > 0:
        raise ConfigurationError(f"refresh_interval must be > 0 seconds, got {refresh_interval!r}")
    registry = REGISTRY if registry is None else registry
    metrics = _registries.get(registry)
    if metrics is not None and engine in metrics.engines:
        raise ConfigurationError("this engine is already instrumented for Prometheus on this registry")
    if metrics is None:
        metrics = _registries[registry] = _Metrics(registry, buckets)
    return PrometheusInstrumentation(engine, metrics, refresh_interval)
