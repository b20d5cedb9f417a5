"""OpenTelemetry: trace context into meta at enqueue, a span per attempt, current in the body."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from aiojobs_engine import ConfigurationError, Engine, current_job
from aiojobs_engine.contrib.opentelemetry import instrument
from tests.contrib import _cpu_app


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.shutdown()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


def job_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith("aiojobs.job ")]


async def test_a_job_span_continues_the_trace_that_enqueued_it(make_engine, provider, exporter) -> None:
    engine = make_engine()
    instrument(engine, tracer_provider=provider)
    tracer = provider.get_tracer("the web app")
    seen: dict[str, object] = {}

    @engine.job(queue="email", max_attempts=2, retry=lambda attempt: 0.0)
    async def send_welcome(user_id: int) -> str:
        seen["current"] = trace.get_current_span().get_span_context()
        with tracer.start_as_current_span("smtp call"):
            pass
        if current_job().attempt == 1:
            raise ConnectionError("smtp down")
        return "sent"

    async with engine:
        with tracer.start_as_current_span("POST /signup") as request_span:
            record = await send_welcome.enqueue(42)
        assert record
        request = request_span.get_span_context()
        flags = request.trace_flags
        assert record.meta["traceparent"] == f"00-{request.trace_id:032x}-{request.span_id:016x}-{flags:02x}"
        await engine.workoff()
        await engine.workoff()

    first, second = job_spans(exporter)
    for span, attempt, outcome in ((first, 1, "retrying"), (second, 2, "completed")):
        assert span.name == "aiojobs.job send_welcome" and span.kind is SpanKind.CONSUMER
        assert span.parent is not None and span.parent.span_id == request.span_id
        assert span.context is not None and span.context.trace_id == request.trace_id
        attributes = dict(span.attributes or {})
        assert attributes["aiojobs.job.id"] == record.id and attributes["aiojobs.job.name"] == "send_welcome"
        assert attributes["aiojobs.job.queue"] == "email" and attributes["aiojobs.job.attempt"] == attempt
        assert attributes["aiojobs.job.outcome"] == outcome and attributes["aiojobs.engine.id"]
        assert attributes["messaging.destination.name"] == "email"
    assert first.status.status_code is StatusCode.ERROR and first.status.description == "ConnectionError: smtp down"
    assert [event.name for event in first.events] == ["exception"]
    assert first.events[0].attributes and first.events[0].attributes["exception.type"] == "ConnectionError"
    assert second.status.status_code is StatusCode.UNSET
    assert seen["current"] == second.context  # the attempt's span is current inside the body
    smtp = [s for s in exporter.get_finished_spans() if s.name == "smtp call"]
    assert [s.parent.span_id for s in smtp if s.parent] == [first.context.span_id, second.context.span_id]  # type: ignore[union-attr]


async def test_without_a_current_span_jobs_start_their_own_trace(make_engine, provider, exporter) -> None:
    engine = make_engine()
    instrument(engine, tracer_provider=provider)
    current: list[trace.SpanContext] = []

    @engine.job
    def blocking() -> None:  # runs in a thread: the span is current there too
        current.append(trace.get_current_span().get_span_context())

    async with engine:
        record = await blocking.enqueue()
        explicit = await blocking.options(meta={"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"}).enqueue()
        assert record and explicit
        assert "traceparent" not in record.meta
        assert explicit.meta["traceparent"] == "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"  # kept as given
        await engine.workoff()
    spans = {int(dict(s.attributes or {})["aiojobs.job.id"]): s for s in job_spans(exporter)}  # type: ignore[arg-type]
    assert spans[record.id].parent is None
    assert spans[explicit.id].parent is not None and spans[explicit.id].parent.span_id == int("cd" * 8, 16)
    assert sorted(c.span_id for c in current) == sorted(s.context.span_id for s in spans.values())  # type: ignore[union-attr]


async def test_new_trace_links_instead_of_parenting(make_engine, provider, exporter) -> None:
    engine = make_engine()
    instrument(engine, tracer_provider=provider, new_trace=True)
    tracer = provider.get_tracer("the web app")

    @engine.job
    async def job() -> None: ...

    async with engine:
        with tracer.start_as_current_span("enqueuer") as enqueuer:
            await job.enqueue()
        await engine.workoff()
    (span,) = job_spans(exporter)
    assert span.parent is None
    assert [link.context.span_id for link in span.links] == [enqueuer.get_span_context().span_id]


async def test_failed_for_good_and_uninstrument(make_engine, provider, exporter) -> None:
    engine = make_engine()
    instrumentation = instrument(engine, tracer_provider=provider)
    with pytest.raises(ConfigurationError, match="already instrumented"):
        instrument(engine, tracer_provider=provider)

    @engine.job(max_attempts=1)
    async def broken() -> None:
        raise KeyError("missing")

    async with engine:
        await broken.enqueue()
        await engine.workoff()
        (span,) = job_spans(exporter)
        assert dict(span.attributes or {})["aiojobs.job.outcome"] == "failed"
        assert span.status.status_code is StatusCode.ERROR
        instrumentation.uninstrument()
        instrument(engine, tracer_provider=TracerProvider()).uninstrument()  # allowed again once uninstrumented
        await broken.enqueue()
        await engine.workoff()
    assert len(job_spans(exporter)) == 1


async def test_a_cpu_bound_attempt_is_traced_from_the_engine(aiojobs_engine_factory, provider, exporter) -> None:
    cpu_engine: Engine = await aiojobs_engine_factory(_cpu_app.engine)  # our own pytest plugin's fixture
    instrumentation = instrument(cpu_engine, tracer_provider=provider)
    try:
        with provider.get_tracer("t").start_as_current_span("enqueuer") as enqueuer:
            record = await _cpu_app.crunch.enqueue(1000)
        await cpu_engine.workoff()
    finally:
        instrumentation.uninstrument()
    assert record
    done = await cpu_engine.get_job(record.id)
    assert done and done.result["pid"] != os.getpid()
    (span,) = job_spans(exporter)
    assert span.parent is not None and span.parent.span_id == enqueuer.get_span_context().span_id
    assert dict(span.attributes or {})["aiojobs.job.outcome"] == "completed"
    assert span.end_time is not None and span.start_time is not None and span.end_time > span.start_time
