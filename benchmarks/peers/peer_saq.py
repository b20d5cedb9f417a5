"""saq's side of ``benchmarks/compare.py`` (Redis, a database number of its own). One scenario per process.

Written against saq's documented API: ``Queue.from_url(...)``, ``queue.enqueue(name, **kwargs)``,
``Worker(queue, functions=..., concurrency=C)`` and ``worker.start()`` / ``worker.stop()``.

Its fast path and its limits, as used here:
- saq has no bulk enqueue (``queue.map`` also waits for the results): "bulk" is N
  ``enqueue`` calls, 100 in flight at a time.
- Its worker runs C dequeue loops that block on Redis (BLMOVE), so an idle worker wakes at
  once: no polling delay. The queue's ``max_concurrent_ops`` (default 20) caps Redis
  operations in flight; the drain raises it to ``2 * C + 10`` so it does not throttle
  concurrency 100 (a blocked dequeue holds one).
- The drain is timed from ``worker.start()`` to the last ``after_process`` hook (called once
  the job is marked complete in Redis), as ours is timed to its last stored completion.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import time
from typing import Any

import _common
import _redis
from saq import Queue, Worker

SCENARIOS = ["setup", "teardown", "enqueue", "fill", "drain", "latency"]
DONE: dict[str, Any] = {"count": 0, "last": 0.0, "target": 0, "event": None}


async def noop(ctx: dict[str, Any], *, i: int) -> None:
    return None


async def stamp(ctx: dict[str, Any], *, i: int) -> None:
    _common.mark(i)


async def _after(ctx: dict[str, Any]) -> None:
    DONE["count"] += 1
    DONE["last"] = time.perf_counter()
    if DONE["count"] >= DONE["target"] and DONE["event"] is not None:
        DONE["event"].set()


def _queue(args: Any, **options: Any) -> Queue:
    return Queue.from_url(_redis.url(args.redis_db), name=_common.QUEUE, **options)


async def _in_flight(calls: list[Any], width: int = 100) -> None:
    for start in range(0, len(calls), width):
        await asyncio.gather(*(call() for call in calls[start:start + width]))


async def setup(args: Any) -> dict[str, Any]:
    await _redis.claim_database(args.redis_db)
    return {"version": importlib.metadata.version("saq")}


async def teardown(args: Any) -> dict[str, Any]:
    return await _redis.teardown(args)


async def enqueue(args: Any) -> dict[str, Any]:
    await _redis.flush(args.redis_db)
    queue = _queue(args)
    await queue.connect()
    try:
        started = time.perf_counter()
        for i in range(args.jobs):
            await queue.enqueue("noop", i=i)
        single = time.perf_counter() - started
        await _redis.flush(args.redis_db)
        started = time.perf_counter()
        await _in_flight([lambda i=i: queue.enqueue("noop", i=i) for i in range(args.jobs)])
        bulk = time.perf_counter() - started
    finally:
        await queue.disconnect()
    await _redis.flush(args.redis_db)
    return {"single_jobs_per_s": args.jobs / single, "bulk_jobs_per_s": args.jobs / bulk, "jobs": args.jobs,
            "how": "single: await queue.enqueue(name, i=i) in a loop; bulk (no bulk API): 100 calls in flight"}


async def fill(args: Any) -> dict[str, Any]:
    await _redis.flush(args.redis_db)
    queue = _queue(args)
    await queue.connect()
    try:
        await _in_flight([lambda i=i: queue.enqueue("noop", i=i) for i in range(args.jobs)])
    finally:
        await queue.disconnect()
    return {"jobs": args.jobs}


async def drain(args: Any) -> dict[str, Any]:
    queue = _queue(args, max_concurrent_ops=2 * args.concurrency + 10)
    await queue.connect()
    worker = Worker(queue, functions=[noop], concurrency=args.concurrency, after_process=_after)
    DONE.update(target=args.jobs, event=asyncio.Event())
    before = _common.memory()
    started = time.perf_counter()
    task = asyncio.create_task(worker.start())
    await asyncio.wait_for(DONE["event"].wait(), 600)
    elapsed = DONE["last"] - started
    await worker.stop()
    await task
    await queue.disconnect()
    return {"jobs_per_s": args.jobs / elapsed, "seconds": elapsed, "jobs": args.jobs,
            "rss_before_mib": before["rss_mib"], **_common.memory(),
            "how": f"Worker(concurrency={args.concurrency}), max_concurrent_ops={2 * args.concurrency + 10}; "
                   "timed to the last after_process"}


async def latency(args: Any) -> dict[str, Any]:
    await _redis.flush(args.redis_db)
    worker_queue, client = _queue(args), _queue(args)
    await worker_queue.connect()
    await client.connect()
    worker = Worker(worker_queue, functions=[stamp])
    task = asyncio.create_task(worker.start())
    try:
        await asyncio.sleep(0.5)

        async def send(i: int) -> None:
            await client.enqueue("stamp", i=i)

        figures = await _common.pickup_latency(send, args.samples, args.gap, args.warmup)
    finally:
        await asyncio.sleep(0.2)
        await worker.stop()
        await task
        await worker_queue.disconnect()
        await client.disconnect()
        await _redis.flush(args.redis_db)
    return {**figures, "how": "Worker defaults (blocking dequeue); a second Queue object enqueues"}


def main() -> None:
    args = _common.parser(__doc__ or "", SCENARIOS).parse_args()
    _common.run(lambda: globals()[args.scenario](args))


if __name__ == "__main__":
    main()
