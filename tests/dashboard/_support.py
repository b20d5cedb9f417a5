"""What the dashboard tests share: an engine with a few jobs, a seeded database, a live server.

``make_jobs`` declares the jobs on a fresh engine (each test gets its own, pointed at its own
database). ``seed`` fills a database with one job in each interesting state, including a
hostile one whose argument and error message are HTML. ``serving`` serves the dashboard
with uvicorn in the test's own event loop, on 127.0.0.1 and a free port, for the browser
tests (and the README's screenshot).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

from aiojobs_engine import Engine, JobRecord, JobState
from aiojobs_engine.dashboard import dashboard
from tests._waiting import eventually

HOSTILE_ARG = "<script>window.__pwned = 'args'</script>"
HOSTILE_MESSAGE = "<img src=x onerror=\"window.__pwned='error'\">"

FAST: dict[str, Any] = {
    "poll_interval": 0.05, "heartbeat_interval": 0.1, "stale_after": 0.6, "reaper_interval": 0.1,
    "shutdown_grace": 3.0,
}


@dataclass
class Jobs:
    engine: Engine
    add: Any
    boom: Any
    send_email: Any
    gate: asyncio.Event | None = None


def make_jobs(url: str, **settings: Any) -> Jobs:
    engine = Engine(url, **{**FAST, **settings})
    jobs = Jobs(engine=engine, add=None, boom=None, send_email=None)

    @engine.job
    async def add(x: int, y: int) -> int:
        return x + y

    @engine.job(max_attempts=1)
    async def boom(text: str) -> None:
        raise ValueError(f"{HOSTILE_MESSAGE} {text}")

    @engine.job(queue="email")
    async def send_email(to: str) -> dict[str, str]:
        if jobs.gate is not None:
            await jobs.gate.wait()
        return {"sent_to": to}

    jobs.add, jobs.boom, jobs.send_email = add, boom, send_email
    return jobs


@dataclass
class Seeded:
    completed: list[JobRecord]
    failed: JobRecord
    hostile: JobRecord
    email: list[JobRecord]
    waiting: JobRecord


async def seed(jobs: Jobs) -> Seeded:
    """Three completed adds, two failed booms (one hostile), two sent emails, one delayed add."""
    completed = [await jobs.add.enqueue(i, i) for i in range(3)]
    failed = await jobs.boom.enqueue("plain")
    hostile = await jobs.boom.enqueue(HOSTILE_ARG)
    email = [await jobs.send_email.enqueue(f"user{i}@example.com") for i in range(2)]
    await jobs.engine.workoff()
    waiting = await jobs.add.options(delay=3600).enqueue(100, 1)
    records = {r.id: r for r in await jobs.engine.list_jobs(limit=100)}
    return Seeded(completed=[records[r.id] for r in completed], failed=records[failed.id],
                  hostile=records[hostile.id], email=[records[r.id] for r in email], waiting=records[waiting.id])


async def state_of(engine: Engine, job_id: int) -> JobState | None:
    record = await engine.get_job(job_id)
    return None if record is None else record.state


@dataclass
class LiveDashboard:
    """The dashboard served by uvicorn on 127.0.0.1, at ``url``."""

    engine: Engine
    url: str


@asynccontextmanager
async def serving(engine: Engine, **options: Any) -> AsyncIterator[LiveDashboard]:
    """Serve ``dashboard(engine, **options)`` on a free loopback port, in this event loop."""
    listener = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(dashboard(engine, **options), log_config=None, log_level="warning", lifespan="on",
                            ws="none", http="h11")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]), name="dashboard-server")
    async def started() -> bool:
        if task.done():
            await task
            raise RuntimeError("the dashboard server stopped while starting")
        return server.started

    try:
        await eventually(started, timeout=15, message="the dashboard server started")
        yield LiveDashboard(engine=engine, url=f"http://127.0.0.1:{listener.getsockname()[1]}")
    finally:
        server.should_exit = True
        await task
        listener.close()
