"""pgqueuer's side of ``benchmarks/compare.py`` (PostgreSQL, asyncpg driver). One scenario per process.

Written against pgqueuer's documented API: ``Queries(driver).install()`` for the schema,
``Queries.enqueue`` (scalar arguments: one job; lists: one batch insert), ``PgQueuer`` with
``@pgq.entrypoint`` and ``await pgq.run(...)``.

Its fast path, used here: jobs are claimed in batches (``batch_size``) and completions are
buffered and written in batches. ``max_concurrent_tasks`` is its per-worker concurrency cap and
must be at least twice ``batch_size``, so concurrency C runs with ``max_concurrent_tasks=C``
and the largest batch it allows, ``batch_size=C // 2``. The drain uses
``mode=QueueExecutionMode.drain`` (returns once the queue is empty and in-flight jobs are
recorded), and is timed from the ``run`` call to its return, which includes pgqueuer's own
start-up checks and shutdown (a little against pgqueuer; ``last_body_s`` shows how much).
The latency scenario uses its defaults (``batch_size=10``, LISTEN/NOTIFY wake-up).
Finished jobs leave the queue table for pgqueuer's log table (so its queue stays small).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import time
from typing import Any

import _common
import asyncpg
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries
from pgqueuer.types import QueueExecutionMode

SCENARIOS = ["setup", "teardown", "enqueue", "fill", "drain", "latency"]


async def _queries(args: Any) -> tuple[asyncpg.Connection, Queries]:
    conn = await asyncpg.connect(_common.database_url(args.db))
    return conn, Queries(AsyncpgDriver(conn))


async def _clear(queries: Queries) -> None:
    await queries.clear_queue()
    await queries.clear_queue_log()


async def setup(args: Any) -> dict[str, Any]:
    await _common.create_database(args.db)
    conn, queries = await _queries(args)
    try:
        await queries.install()
    finally:
        await conn.close()
    return {"version": importlib.metadata.version("pgqueuer")}


async def teardown(args: Any) -> dict[str, Any]:
    await _common.drop_database(args.db)
    return {}


async def enqueue(args: Any) -> dict[str, Any]:
    conn, queries = await _queries(args)
    try:
        await _clear(queries)
        started = time.perf_counter()
        for i in range(args.jobs):
            await queries.enqueue("noop", str(i).encode(), 0)
        single = time.perf_counter() - started
        await _clear(queries)
        started = time.perf_counter()
        await queries.enqueue(["noop"] * args.jobs, [str(i).encode() for i in range(args.jobs)], [0] * args.jobs)
        bulk = time.perf_counter() - started
        await _clear(queries)
    finally:
        await conn.close()
    return {"single_jobs_per_s": args.jobs / single, "bulk_jobs_per_s": args.jobs / bulk, "jobs": args.jobs,
            "how": "single: queries.enqueue(name, payload, 0) in a loop; bulk: queries.enqueue(lists)"}


async def fill(args: Any) -> dict[str, Any]:
    conn, queries = await _queries(args)
    try:
        await _clear(queries)
        for start in range(0, args.jobs, 5000):
            count = min(args.jobs, start + 5000) - start
            await queries.enqueue(["noop"] * count, [str(i).encode() for i in range(start, start + count)],
                                  [0] * count)
    finally:
        await conn.close()
    return {"jobs": args.jobs}


async def drain(args: Any) -> dict[str, Any]:
    conn = await asyncpg.connect(_common.database_url(args.db))
    pgq = PgQueuer.from_asyncpg_connection(conn)
    done = {"count": 0, "last": 0.0}

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        done["count"] += 1
        done["last"] = time.perf_counter()

    before = _common.memory()
    batch = max(1, args.concurrency // 2)
    started = time.perf_counter()
    await pgq.run(batch_size=batch, max_concurrent_tasks=args.concurrency, mode=QueueExecutionMode.drain)
    elapsed = time.perf_counter() - started
    await conn.close()
    if done["count"] != args.jobs:
        raise RuntimeError(f"pgqueuer ran {done['count']} jobs, expected {args.jobs}")
    return {"jobs_per_s": args.jobs / elapsed, "seconds": elapsed, "last_body_s": done["last"] - started,
            "jobs": args.jobs, "rss_before_mib": before["rss_mib"], **_common.memory(),
            "how": f"pgq.run(mode=drain, batch_size={batch}, max_concurrent_tasks={args.concurrency})"}


async def latency(args: Any) -> dict[str, Any]:
    conn, queries = await _queries(args)
    await _clear(queries)
    worker_conn = await asyncpg.connect(_common.database_url(args.db))
    pgq = PgQueuer.from_asyncpg_connection(worker_conn)

    @pgq.entrypoint("stamp")
    async def stamp(job: Job) -> None:
        _common.mark(int(job.payload or b"0"))

    task = asyncio.create_task(pgq.run())
    try:
        await asyncio.sleep(0.5)  # let it install its listener

        async def send(i: int) -> None:
            await queries.enqueue("stamp", str(i).encode(), 0)

        figures = await _common.pickup_latency(send, args.samples, args.gap, args.warmup)
    finally:
        pgq.shutdown.set()
        await asyncio.wait_for(task, 30)
        await worker_conn.close()
        await _clear(queries)
        await conn.close()
    return {**figures, "how": "pgq.run() defaults (LISTEN/NOTIFY); a second connection enqueues"}


def main() -> None:
    args = _common.parser(__doc__ or "", SCENARIOS).parse_args()
    _common.run(lambda: globals()[args.scenario](args))


if __name__ == "__main__":
    main()
