"""Observability without extras: log records carry job context and never arguments; every
event kind is documented."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aiojobs_engine import Cancel, Delete, EventKind, Fail, FrozenClock, JobEvent, Snooze, current_job
from aiojobs_engine.testing import drain

ROOT = Path(__file__).resolve().parents[2]

SECRET = "sk_live_SECRET_4f9a2c"  # what a password or an API key passed as an argument looks like

JOB_FIELDS = ("job_id", "job_name", "queue", "attempt")
PER_JOB_OUTCOMES = {"job.completed", "job.failed", "job.retrying", "job.snoozed", "job.canceled", "job.deleted",
                    "job.deferred", "job.handed_back"}


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured() -> Iterator[Capture]:
    logger = logging.getLogger("aiojobs_engine")
    handler, level = Capture(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_every_job_outcome_line_carries_job_context_and_no_argument(make_engine, captured) -> None:
    engine = make_engine(clock=FrozenClock(datetime(2030, 1, 1, tzinfo=UTC)))
    gate_calls: list[int] = []
    snoozed: set[int] = set()
    started = asyncio.Event()

    def gate(record) -> bool:
        gate_calls.append(record.id)
        return len(gate_calls) > 1  # defer the first time only

    endings = {
        "retry_then_fail": lambda: ValueError("the remote refused"),  # never echo arguments in messages
        "fail": lambda: Fail("bad input"),
        "cancel": lambda: Cancel("not needed"),
        "delete": Delete,
    }

    @engine.job(max_attempts=2, retry=lambda attempt: 1.0, timeout=5)
    async def outcome(kind: str, api_key: str, *, password: str) -> str:
        if kind in endings:
            raise endings[kind]()
        if kind == "snooze" and current_job().id not in snoozed:
            snoozed.add(current_job().id)
            raise Snooze(5)
        if kind == "hang":
            started.set()
            await asyncio.sleep(60)
        return "ok"

    @engine.job(okay_to_run=gate)
    async def gated(api_key: str) -> None: ...

    @engine.job(timeout=0.05, max_attempts=1)
    async def slow(api_key: str) -> None:
        await asyncio.sleep(5)

    @engine.job
    def blocking(api_key: str) -> str:
        return "done in a thread"

    async with engine:
        for kind in ("complete", "retry_then_fail", "snooze", "fail", "cancel", "delete"):
            await outcome.enqueue(kind, SECRET, password=SECRET)
        await gated.enqueue(SECRET)
        await slow.enqueue(SECRET)
        await blocking.enqueue(SECRET)
        await engine.enqueue("declared_nowhere", SECRET, password=SECRET)
        await drain(engine, include_delayed=True)
        hanging = await outcome.enqueue("hang", SECRET, password=SECRET)
        assert hanging
        async with engine.running():
            await asyncio.wait_for(started.wait(), 10)
            await engine.stop(immediate=True)  # handed back at shutdown

    job_lines = [r for r in captured.records if str(getattr(r, "event", "")).startswith("job.")]
    assert {r.event for r in job_lines} >= PER_JOB_OUTCOMES  # type: ignore[attr-defined]
    for record in job_lines:
        check_job_context(record)
    handed_back = [r for r in job_lines if r.event == "job.handed_back"]  # type: ignore[attr-defined]
    assert [r.job_id for r in handed_back] == [hanging.id]  # type: ignore[attr-defined]
    summaries = [r for r in captured.records if getattr(r, "event", "") == "jobs.handed_back"]
    assert [r.getMessage() for r in summaries] == ["handed 1 running job(s) back to waiting"]

    formatter = logging.Formatter("%(message)s %(exc_info)s")
    assert captured.records
    for record in captured.records:
        text = formatter.format(record) + repr(record.__dict__)
        assert SECRET not in text, f"an argument leaked into a log line: {record.getMessage()}"


def check_job_context(record: logging.LogRecord) -> None:
    values = {name: getattr(record, name, None) for name in JOB_FIELDS}
    assert isinstance(values["job_id"], int) and values["job_id"] > 0, record.getMessage()
    assert isinstance(values["job_name"], str) and values["job_name"], record.getMessage()
    assert isinstance(values["queue"], str) and values["queue"], record.getMessage()
    assert isinstance(values["attempt"], int), record.getMessage()


def test_every_event_kind_is_documented_with_its_fields() -> None:
    text = (ROOT / "docs" / "events.md").read_text()
    kinds_section = text.split("\n## Kinds\n")[1].split("\n## ")[0]
    documented = set(re.findall(r"^\| `([a-z_.]+)` \|", kinds_section, re.MULTILINE))
    kinds = {value for key, value in vars(EventKind).items() if key.isupper()}
    assert documented == kinds
    fields_section = text.split("\n## `JobEvent`\n")[1].split("\n## ")[0]
    described = set(re.findall(r"^\| `([a-z_]+)` \|", fields_section, re.MULTILINE))
    assert described == set(JobEvent.__dataclass_fields__)
