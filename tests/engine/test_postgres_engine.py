"""Engines on PostgreSQL: instant pickup, listener recovery, dead connections, outages,
transactional enqueue — with real connections killed by the real server."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest

from aiojobs_engine import Engine, JobState
from aiojobs_engine._url import parse_url
from tests._waiting import LogWatch, backend_calls, eventually
from tests.conftest import FAST, POSTGRES_URL

pytestmark = pytest.mark.postgres


@pytest.fixture
async def admin(postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    dsn = parse_url(postgres_url).dsn
    assert dsn is not None
    conn = await asyncpg.connect(dsn)
    yield conn
    await conn.close()


def schema_of(url: str) -> str:
    schema = parse_url(url).schema
    assert schema is not None
    return schema


async def kill_connections(admin: asyncpg.Connection, schema: str, role: str = "%") -> int:
    """Terminate this test's engine connections (named ``aiojobs:<schema>:<role>``)."""
    rows = await admin.fetch(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE $1 AND pid <> "
        "pg_backend_pid()", f"aiojobs:{schema}:{role}",
    )
    return len(rows)


async def wait_listening(engine: Engine) -> None:
    runtime = engine._runtime
    assert runtime is not None and runtime.notifier is not None
    await asyncio.wait_for(runtime.notifier.connected.wait(), 10)


async def past_the_catch_up_claim() -> None:
    """Subscribing is followed by a catch-up claim (for jobs enqueued while nobody listened);
    a pickup timed after it can only come from a notification. A pause, kept on purpose: no
    public signal says the dispatcher is idle, and a catch-up later than this could only make
    a test pass for the wrong reason, never fail it."""
    await asyncio.sleep(0.3)


async def test_an_idle_engine_starts_a_job_enqueued_elsewhere_at_once(postgres_url: str) -> None:
    worker = Engine(postgres_url, **{**FAST, "poll_interval": 30.0})  # polling cannot explain a fast pickup
    started = asyncio.Event()

    @worker.job(name="ping")
    async def ping() -> None:
        started.set()

    enqueuer = Engine(postgres_url)
    async with worker.running(), enqueuer:
        await wait_listening(worker)
        await past_the_catch_up_claim()
        t0 = time.monotonic()
        await enqueuer.enqueue("ping")
        await asyncio.wait_for(started.wait(), 5)
        assert time.monotonic() - t0 < 0.5


async def test_the_listener_comes_back_after_the_server_kills_it(postgres_url: str,
                                                               admin: asyncpg.Connection) -> None:
    worker = Engine(postgres_url, **{**FAST, "poll_interval": 0.3})
    runs: list[float] = []

    @worker.job(name="ping")
    async def ping() -> None:
        runs.append(time.monotonic())

    schema = schema_of(postgres_url)
    enqueuer = Engine(postgres_url)
    async with worker.running(), enqueuer:
        await wait_listening(worker)
        (old,) = await listen_pids(admin, schema)
        assert await kill_connections(admin, schema, "listen") == 1
        record = await enqueuer.enqueue("ping")  # the listener may be dead: polling picks it up
        assert record
        await worker.wait_for(record.id, timeout=10)

        async def resubscribed() -> bool:  # a new LISTEN connection, and the notifier on it
            runtime = worker._runtime
            assert runtime is not None and runtime.notifier is not None
            return runtime.notifier.connected.is_set() and bool(await _new_listener(admin, schema, old))

        await eventually(resubscribed, message="the notifier re-subscribed")
        await wait_listening(worker)
        await past_the_catch_up_claim()
        t0 = time.monotonic()
        again = await enqueuer.enqueue("ping")
        assert again
        await worker.wait_for(again.id, timeout=10)
        assert runs[-1] - t0 < 0.25  # faster than a poll: notified again


async def listen_pids(admin: asyncpg.Connection, schema: str) -> set[int]:
    rows = await admin.fetch("SELECT pid FROM pg_stat_activity WHERE application_name = $1",
                             f"aiojobs:{schema}:listen")
    return {row["pid"] for row in rows}


async def test_a_killed_listener_is_replaced_at_once_whatever_the_poll_interval(
        postgres_url: str, admin: asyncpg.Connection, caplog: pytest.LogCaptureFixture) -> None:
    """asyncpg's termination callback triggers the reconnect: with poll_interval=30 a dead
    LISTEN connection would otherwise go unnoticed until a liveness check (every 5 s at
    most; it was 150 s) and pickups would wait for the 30 s poll."""
    worker = Engine(postgres_url, **{**FAST, "poll_interval": 30.0})
    started = asyncio.Event()

    @worker.job(name="ping")
    async def ping() -> None:
        started.set()

    schema = schema_of(postgres_url)
    enqueuer = Engine(postgres_url)
    async with worker.running(), enqueuer:
        await wait_listening(worker)
        await past_the_catch_up_claim()
        (old,) = await listen_pids(admin, schema)
        with caplog.at_level(logging.WARNING, logger="aiojobs_engine"):
            assert await kill_connections(admin, schema, "listen") == 1
            await eventually(lambda: _new_listener(admin, schema, old), timeout=2.0,
                             message="the LISTEN connection replaced")
        assert any("listener: connection lost" in r.getMessage() for r in caplog.records)
        await wait_listening(worker)
        await past_the_catch_up_claim()
        t1 = time.monotonic()
        await enqueuer.enqueue("ping")  # another engine's connection: only a notification wakes the worker
        await asyncio.wait_for(started.wait(), 10)
        assert time.monotonic() - t1 < 1.0  # notified, not polled


async def _new_listener(admin: asyncpg.Connection, schema: str, old: int) -> set[int]:
    return (await listen_pids(admin, schema)) - {old}


async def test_an_engine_survives_the_server_killing_all_its_connections(postgres_url: str,
                                                                        admin: asyncpg.Connection) -> None:
    engine = Engine(postgres_url, **FAST)
    runs: Counter[int] = Counter()

    @engine.job(max_attempts=20)
    async def work(n: int) -> int:
        runs[n] += 1
        await asyncio.sleep(0.005)
        return n

    async with engine.running():
        await engine.enqueue_many([work.new(i) for i in range(300)])
        for _ in range(5):
            await asyncio.sleep(0.15)  # the fault, paced: every connection killed 5 times while jobs run
            await kill_connections(admin, schema_of(postgres_url))

        async def all_done() -> bool:
            try:
                counts = await engine.count_jobs()
            except Exception:
                return False
            return counts.get(("default", JobState.COMPLETED), 0) == 300

        await eventually(all_done, timeout=60, interval=0.1, message="300 jobs completed")
    assert set(runs) == set(range(300))


async def test_outcomes_are_written_when_the_database_comes_back(postgres_url: str, admin: asyncpg.Connection,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    engine = Engine(postgres_url, **{**FAST, "stale_after": 30.0})
    started = asyncio.Event()
    release = asyncio.Event()

    @engine.job
    async def waits() -> str:
        started.set()
        await release.wait()
        return "finished during the outage"

    caplog.set_level(logging.INFO, logger="aiojobs_engine")
    database = await admin.fetchval("SELECT current_database()")
    server = await asyncpg.connect(POSTGRES_URL)  # ALTER DATABASE must come from another database
    async with engine.running():
        record = await waits.enqueue()
        assert record
        await asyncio.wait_for(started.wait(), 10)
        await server.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false')
        try:
            await kill_connections(admin, schema_of(postgres_url))
            async with backend_calls(engine, "job_write_many") as writes:
                release.set()  # the job finishes while nothing can reach the database
                await writes.more(2, timeout=10)  # its outcome's write failed, and was tried again
        finally:
            await server.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')
            await server.close()
        done = await engine.wait_for(record.id, timeout=30)
    assert done.state is JobState.COMPLETED and done.attempt == 1 and done.result == "finished during the outage"
    # The outage was said once, and its end once; the outcome was kept and retried, not lost.
    outage = [r.getMessage() for r in caplog.records if getattr(r, "event", "").startswith("database.")]
    assert len(outage) == 2 and "cannot be reached" in outage[0] and "reachable again" in outage[1], outage


async def test_transactional_enqueue_commits_or_rolls_back_with_the_caller(postgres_url: str) -> None:
    engine = Engine(postgres_url, **FAST)

    @engine.job
    async def welcome(user: str) -> str:
        return f"hello {user}"

    dsn = parse_url(postgres_url).dsn
    async with engine:
        conn = await asyncpg.connect(dsn)
        try:
            with pytest.raises(RuntimeError):
                async with conn.transaction():
                    await welcome.options(connection=conn).enqueue("ghost")
                    raise RuntimeError("the caller's transaction fails")
            async with conn.transaction():
                kept = await welcome.options(connection=conn).enqueue("ada")
                assert kept
                assert await engine.get_job(kept.id) is None  # not visible before the commit
        finally:
            await conn.close()
        assert await engine.get_job(kept.id) is not None
        assert await engine.workoff() == 1
        assert [(j.args, j.result) for j in await engine.list_jobs()] == [(["ada"], "hello ada")]


def test_the_url_schema_keeps_tables_out_of_public(postgres_url: str) -> None:
    assert schema_of(postgres_url).startswith("t_")


async def test_an_outage_is_said_once_and_its_end_once(postgres_url: str, admin: asyncpg.Connection) -> None:
    """Issue 19: a PostgreSQL outage logged ~70 warnings (20 with tracebacks) and bursts of
    "retrying in ..." lines. Now: one warning when the database goes away, one line when it
    is back, whichever components notice (claims, writes, heartbeat, listener, reaper, cron),
    and the jobs that finished meanwhile are stored once it is back."""
    engine = Engine(postgres_url, **{**FAST, "stale_after": 30.0})
    release = asyncio.Event()
    running: set[int] = set()
    all_running = asyncio.Event()
    finished: set[int] = set()
    all_finished = asyncio.Event()

    @engine.job
    async def work(n: int) -> int:
        running.add(n)
        if len(running) == 10:
            all_running.set()
        await release.wait()
        finished.add(n)
        if len(finished) == 10:
            all_finished.set()
        return n

    database = await admin.fetchval("SELECT current_database()")
    server = await asyncpg.connect(POSTGRES_URL)  # ALTER DATABASE must come from another database
    async with LogWatch(logging.DEBUG) as logs, engine.running():
        records = [r for r in await engine.enqueue_many([work.new(n) for n in range(10)]) if r]  # a slot each
        await wait_listening(engine)
        await asyncio.wait_for(all_running.wait(), 10)
        await server.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false')
        try:
            await kill_connections(admin, schema_of(postgres_url))
            await logs.wait_for("database.down")
            async with backend_calls(engine, "job_write_many") as writes:
                release.set()  # the jobs finish while nothing can reach the database
                await asyncio.wait_for(all_finished.wait(), 10)
                # The outage lasts: the outcomes' write fails again and again (each time a
                # chance to log a line too many), and so do the heartbeats, the listener, the
                # claim watch and the reading of queue settings meanwhile.
                await writes.more(4, timeout=15)
        finally:
            await server.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')
            await server.close()
        await logs.wait_for("database.up", timeout=15)
        done = [await engine.wait_for(r.id, timeout=15) for r in records]
    assert all(d.state is JobState.COMPLETED and d.attempt == 1 for d in done)
    ours = [r for r in logs.records if r.name == "aiojobs_engine" and r.levelno >= logging.WARNING]
    assert [getattr(r, "event", None) for r in ours] == ["database.down"], [r.getMessage() for r in ours]
    (up,) = logs.of("database.up")
    assert up.levelno == logging.INFO and "reachable again, after" in up.getMessage()
