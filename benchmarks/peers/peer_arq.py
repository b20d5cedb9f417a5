"""arq's side of ``benchmarks/compare.py`` (Redis, a database number of its own). One scenario per process.

Written against arq's documented API: ``create_pool(RedisSettings(...))``,
``pool.enqueue_job(name, *args)``, ``Worker(functions=..., burst=True, max_jobs=C, ...)``.

Its fast path and its limits, as used here:
- arq has no bulk enqueue: "bulk" is N ``enqueue_job`` calls, 100 in flight at a time.
- The worker polls its queue (a sorted set) every ``poll_delay`` seconds (default 0.5) and
  takes up to ``queue_read_limit`` ids per poll (default ``max(5 * max_jobs, 100)``). The drain
  lowers ``poll_delay`` to 0.01 s, which is what a throughput-minded user would do (at the
  default 0.5 s arq spends most of a drain asleep); the latency scenario keeps the default
  0.5 s, so its pickup is a polling delay, like ours on SQLite.
- The drain is ``burst=True`` (returns once the queue is empty) and is timed from the start
  to the last ``after_job_end`` (called once the job's result is stored), as ours is timed to
  its last stored completion.
arq stores each result for an hour (its default ``keep_result``), a write per job as ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import time
from typing import Any

import _common
import _redis
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.worker import Worker

SCENARIOS = ["setup", "teardown", "enqueue", "fill", "drain", "latency"]
DONE: dict[str, Any] = {"count": 0, "last": 0.0}


async def noop(ctx: dict[str, Any], i: int) -> None:
    return None


async def stamp(ctx: dict[str, Any], i: int) -> None:
    _common.mark(i)


async def _ended(ctx: dict[str, Any]) -> None:
    DONE["count"] += 1
    DONE["last"] = time.perf_counter()


async def _pool(args: Any) -> ArqRedis:
    return await create_pool(RedisSettings(host=_common.REDIS_HOST, port=_common.REDIS_PORT, database=args.redis_db))


async def _in_flight(calls: list[Any], width: int = 100) -> None:
    for start in range(0, len(calls), width):
        await asyncio.gather(*(call() for call in calls[start:start + width]))


async def setup(args: Any) -> dict[str, Any]:
    await _redis.claim_database(args.redis_db)
    return {"version": importlib.metadata.version("arq")}


async def teardown(args: Any) -> dict[str, Any]:
    return await _redis.teardown(args)


async def enqueue(args: Any) -> dict[str, Any]:
    pool = await _pool(args)
    try:
        await pool.flushdb()
        started = time.perf_counter()
        for i in range(args.jobs):
            await pool.enqueue_job("noop", i)
        single = time.perf_counter() - started
        await pool.flushdb()
        started = time.perf_counter()
        await _in_flight([lambda i=i: pool.enqueue_job("noop", i) for i in range(args.jobs)])
        bulk = time.perf_counter() - started
        await pool.flushdb()
    finally:
        await pool.aclose()
    return {"single_jobs_per_s": args.jobs / single, "bulk_jobs_per_s": args.jobs / bulk, "jobs": args.jobs,
            "how": "single: await pool.enqueue_job(name, i) in a loop; bulk (no bulk API): 100 calls in flight"}


async def fill(args: Any) -> dict[str, Any]:
    pool = await _pool(args)
    try:
        await pool.flushdb()
        await _in_flight([lambda i=i: pool.enqueue_job("noop", i) for i in range(args.jobs)])
    finally:
        await pool.aclose()
    return {"jobs": args.jobs}


async def drain(args: Any) -> dict[str, Any]:
    pool = await _pool(args)
    worker = Worker(functions=[noop], redis_pool=pool, burst=True, max_jobs=args.concurrency, poll_delay=0.01,
                    handle_signals=False, after_job_end=_ended, log_results=False)
    before = _common.memory()
    started = time.perf_counter()
    await worker.async_run()
    returned = time.perf_counter() - started
    await worker.close()
    if DONE["count"] != args.jobs:
        raise RuntimeError(f"arq ran {DONE['count']} jobs, expected {args.jobs}")
    elapsed = DONE["last"] - started
    return {"jobs_per_s": args.jobs / elapsed, "seconds": elapsed, "returned_s": returned, "jobs": args.jobs,
            "rss_before_mib": before["rss_mib"], **_common.memory(),
            "how": f"Worker(burst=True, max_jobs={args.concurrency}, poll_delay=0.01).async_run(), "
                   "timed to the last after_job_end"}


async def latency(args: Any) -> dict[str, Any]:
    client = await _pool(args)
    await client.flushdb()
    worker = Worker(functions=[stamp], redis_pool=await _pool(args), handle_signals=False, log_results=False)
    task = asyncio.create_task(worker.async_run())
    try:
        await asyncio.sleep(0.5)

        async def send(i: int) -> None:
            await client.enqueue_job("stamp", i)

        figures = await _common.pickup_latency(send, args.samples, args.gap, args.warmup)
    finally:
        await asyncio.sleep(0.2)  # let the last job's result be stored
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(asyncio.CancelledError):
            await worker.close()
        await client.flushdb()
        await client.aclose()
    return {**figures, "how": "Worker defaults (polls every 0.5 s); a second pool enqueues"}


def main() -> None:
    args = _common.parser(__doc__ or "", SCENARIOS).parse_args()
    _common.run(lambda: globals()[args.scenario](args))


if __name__ == "__main__":
    main()
