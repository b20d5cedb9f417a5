"""Prometheus: counters, histograms and per-state gauges, read back through a real scrape."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from aiojobs_engine import ConfigurationError, Fail, current_job
from aiojobs_engine.contrib.prometheus import instrument
from tests._waiting import eventually


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def scrape(registry: CollectorRegistry) -> Iterator[str]:
    """The URL of a real /metrics endpoint serving ``registry``."""
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = await asyncio.to_thread(httpx.get, url, timeout=5)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


async def test_outcomes_waits_durations_and_states_are_scraped(make_engine, registry, scrape) -> None:
    engine = make_engine()
    metrics = instrument(engine, registry, refresh_interval=0.05)

    @engine.job(queue="email", max_attempts=2, retry=lambda attempt: 0.0)
    async def send(flaky: bool) -> str:
        if flaky and current_job().attempt == 1:
            raise ConnectionError("smtp down")
        return "sent"

    @engine.job(max_attempts=3)
    async def reject() -> None:
        raise Fail("bad input")

    async with engine:
        before = await samples(scrape)
        assert "aiojobs_jobs" not in {name for name, _ in before}  # no snapshot yet: no gauge
        for flaky in (False, True, False):
            await send.enqueue(flaky)
        await reject.enqueue()
        await send.options(delay=3600).enqueue(False)
        assert await engine.workoff() == 5
        await metrics.refresh()
        got = await samples(scrape)

    assert got[key("aiojobs_jobs_enqueued_total", queue="email", job="send")] == 4
    assert got[key("aiojobs_jobs_enqueued_total", queue="default", job="reject")] == 1
    outcomes = {"completed": 3, "retrying": 1}
    for outcome, count in outcomes.items():
        assert got[key("aiojobs_job_outcomes_total", queue="email", job="send", outcome=outcome)] == count
    assert got[key("aiojobs_job_outcomes_total", queue="default", job="reject", outcome="failed")] == 1
    assert got[key("aiojobs_job_queue_wait_seconds_count", queue="email", job="send")] == 4
    assert got[key("aiojobs_job_duration_seconds_count", queue="email", job="send")] == 4
    assert got[key("aiojobs_job_duration_seconds_bucket", queue="email", job="send", le="3600.0")] == 4
    assert got[key("aiojobs_jobs", queue="email", state="completed")] == 3
    assert got[key("aiojobs_jobs", queue="email", state="waiting")] == 1  # the delayed one
    assert got[key("aiojobs_jobs", queue="default", state="failed")] == 1
    assert got[key("aiojobs_jobs", queue="default", state="running")] == 0  # every state, zeros included
    assert got[key("aiojobs_jobs_refreshed_timestamp_seconds")] > 0


async def test_the_state_gauge_refreshes_while_the_engine_works(make_engine, registry, scrape) -> None:
    engine = make_engine()
    instrument(engine, registry, refresh_interval=0.02)

    @engine.job(queue="reports")
    async def report() -> None: ...

    async def refreshed_while_working() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        got = await samples(scrape)
        return got if got.get(key("aiojobs_jobs", queue="reports", state="waiting")) == 1 else {}

    async with engine:
        await report.options(delay=3600).enqueue()
        async with engine.running():
            got = await eventually(refreshed_while_working, message="the aiojobs_jobs gauge refreshed")
        refreshed = got[key("aiojobs_jobs_refreshed_timestamp_seconds")]
    # Stopped, and even closed: the snapshot stays, and no I/O happens at scrape time.
    after = await samples(scrape)
    assert after[key("aiojobs_jobs_refreshed_timestamp_seconds")] >= refreshed


async def test_engines_share_a_registry_and_bad_arguments_are_refused(make_engine, registry) -> None:
    first, second = make_engine(), make_engine()
    instrument(first, registry)
    handle = instrument(second, registry)  # no "duplicated timeseries" error: the metrics are shared
    handle.uninstrument()
    with pytest.raises(ConfigurationError, match="refresh_interval must be > 0"):
        instrument(first, registry, refresh_interval=0)
    with pytest.raises(ConfigurationError, match=r"takes an aiojobs_engine\.Engine"):
        instrument("engine", registry)  # type: ignore[arg-type]


async def test_a_second_instrument_of_one_engine_is_refused_and_counts_stay_single(make_engine, registry,
                                                                                   scrape) -> None:
    engine = make_engine()
    handle = instrument(engine, registry)
    with pytest.raises(ConfigurationError, match="already instrumented for Prometheus"):
        instrument(engine, registry)
    with pytest.raises(ConfigurationError, match="already instrumented for Prometheus"):
        instrument(engine, registry, refresh_interval=5.0)  # other options: still the same counts

    @engine.job
    async def one() -> int:
        return 1

    async with engine:
        await one.enqueue()
        await engine.workoff()
    got = await samples(scrape)
    labels = {"queue": "default", "job": "one"}
    assert got[key("aiojobs_jobs_enqueued_total", **labels)] == 1
    assert got[key("aiojobs_job_outcomes_total", **labels, outcome="completed")] == 1
    handle.uninstrument()
    again = instrument(engine, registry)  # once turned off, it may be instrumented anew
    again.uninstrument()
    other = instrument(engine, CollectorRegistry())  # another registry: nothing there is doubled
    other.uninstrument()
