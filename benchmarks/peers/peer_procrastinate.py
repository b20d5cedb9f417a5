"""procrastinate's side of ``benchmarks/compare.py`` (PostgreSQL, psycopg 3 with its C speed-ups).

Written against procrastinate's documented API: ``App(connector=PsycopgConnector(...))``,
``app.schema_manager.apply_schema_async()``, ``@app.task``, ``task.defer_async(...)`` and
``task.batch_defer_async(...)`` (one statement for many jobs), ``app.run_worker_async(...)``.

Its fast path, used here: one worker with ``concurrency=C`` (asynchronous jobs run side by
side), LISTEN/NOTIFY on (its default), and a connection pool of ``C + 2`` connections (the
worker takes one per job it finishes, plus the listener and the fetch; psycopg_pool's default
of 4 starves it at concurrency 100). procrastinate fetches one job per query: it has no batch
claim. The drain runs ``run_worker_async(wait=False)``, which returns once no job is left, and
is timed from that call to its return, including procrastinate's worker registration and
shutdown (a little against it; ``last_body_s`` shows how much). Finished jobs stay in
``procrastinate_jobs`` with status ``succeeded`` (its default, ``delete_jobs="never"``), as
ours stay ``completed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import time
from typing import Any

import _common
import psycopg
from procrastinate import App, PsycopgConnector

SCENARIOS = ["setup", "teardown", "enqueue", "fill", "drain", "latency"]


def _app(args: Any, pool: int = 4) -> App:
    connector = PsycopgConnector(conninfo=_common.database_url(args.db), min_size=min(4, pool), max_size=pool)
    return App(connector=connector)


async def _clear(args: Any) -> None:
    async with await psycopg.AsyncConnection.connect(_common.database_url(args.db), autocommit=True) as conn:
        await conn.execute("TRUNCATE procrastinate_jobs RESTART IDENTITY CASCADE")


def _declare(app: App, done: dict[str, Any]) -> tuple[Any, Any]:
    @app.task(name="noop", queue=_common.QUEUE)
    async def noop(i: int) -> None:
        done["count"] += 1
        done["last"] = time.perf_counter()

    @app.task(name="stamp", queue=_common.QUEUE)
    async def stamp(i: int) -> None:
        _common.mark(i)

    return noop, stamp


async def setup(args: Any) -> dict[str, Any]:
    await _common.create_database(args.db)
    app = _app(args)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
    return {"version": importlib.metadata.version("procrastinate")}


async def teardown(args: Any) -> dict[str, Any]:
    await _common.drop_database(args.db)
    return {}


async def enqueue(args: Any) -> dict[str, Any]:
    app = _app(args)
    noop, _ = _declare(app, {"count": 0, "last": 0.0})
    await _clear(args)
    async with app.open_async():
        started = time.perf_counter()
        for i in range(args.jobs):
            await noop.defer_async(i=i)
        single = time.perf_counter() - started
        await _clear(args)
        started = time.perf_counter()
        await noop.batch_defer_async(*({"i": i} for i in range(args.jobs)))
        bulk = time.perf_counter() - started
    await _clear(args)
    return {"single_jobs_per_s": args.jobs / single, "bulk_jobs_per_s": args.jobs / bulk, "jobs": args.jobs,
            "how": "single: await noop.defer_async(i=i) in a loop; bulk: noop.batch_defer_async(*kwargs)"}


async def fill(args: Any) -> dict[str, Any]:
    app = _app(args)
    noop, _ = _declare(app, {"count": 0, "last": 0.0})
    await _clear(args)
    async with app.open_async():
        for start in range(0, args.jobs, 5000):
            await noop.batch_defer_async(*({"i": i} for i in range(start, min(args.jobs, start + 5000))))
    return {"jobs": args.jobs}


async def drain(args: Any) -> dict[str, Any]:
    app = _app(args, pool=args.concurrency + 2)
    done = {"count": 0, "last": 0.0}
    _declare(app, done)
    async with app.open_async():
        before = _common.memory()
        started = time.perf_counter()
        await app.run_worker_async(queues=[_common.QUEUE], concurrency=args.concurrency, wait=False,
                                   install_signal_handlers=False)
        elapsed = time.perf_counter() - started
    if done["count"] != args.jobs:
        raise RuntimeError(f"procrastinate ran {done['count']} jobs, expected {args.jobs}")
    return {"jobs_per_s": args.jobs / elapsed, "seconds": elapsed, "last_body_s": done["last"] - started,
            "jobs": args.jobs, "rss_before_mib": before["rss_mib"], **_common.memory(),
            "how": f"run_worker_async(concurrency={args.concurrency}, wait=False), pool {args.concurrency + 2}"}


async def latency(args: Any) -> dict[str, Any]:
    await _clear(args)
    worker_app = _app(args)
    _declare(worker_app, {"count": 0, "last": 0.0})
    client_app = _app(args)
    _, stamp = _declare(client_app, {"count": 0, "last": 0.0})
    async with worker_app.open_async(), client_app.open_async():
        task = asyncio.create_task(worker_app.run_worker_async(queues=[_common.QUEUE], install_signal_handlers=False))
        try:
            await asyncio.sleep(0.5)  # let it register and LISTEN

            async def send(i: int) -> None:
                await stamp.defer_async(i=i)

            figures = await _common.pickup_latency(send, args.samples, args.gap, args.warmup)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 30)
    await _clear(args)
    return {**figures, "how": "run_worker_async() defaults (LISTEN/NOTIFY); a second App defers"}


def main() -> None:
    args = _common.parser(__doc__ or "", SCENARIOS).parse_args()
    _common.run(lambda: globals()[args.scenario](args))


if __name__ == "__main__":
    main()
