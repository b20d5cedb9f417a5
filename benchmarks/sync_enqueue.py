"""Sync enqueue against async enqueue: what a Django or Flask view pays for not awaiting.

    .venv/bin/python benchmarks/sync_enqueue.py --backend sqlite --jobs 5000
    .venv/bin/python benchmarks/sync_enqueue.py --backend postgresql --jobs 5000

Prints jobs per second for: ``await enqueue()`` one by one from one task (the async
baseline); ``enqueue_sync()`` one by one from one thread; the same from 16 threads at once
(the jobs split between them); and 16 threads while the engine runs on a loop of another
thread (the calls go through that loop). The ratio to the async baseline follows each figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

THREADS = 16


def _engine(url: str) -> tuple[object, Callable[[int], object]]:
    from aiojobs_engine import Engine

    engine = Engine(url)

    @engine.job()
    async def noop(n: int) -> None: ...

    return engine, noop


async def _async_rate(url: str, jobs: int) -> float:
    engine, noop = _engine(url)
    async with engine:  # type: ignore[attr-defined]
        started = time.perf_counter()
        for i in range(jobs):
            await noop.enqueue(i)  # type: ignore[attr-defined]
        return jobs / (time.perf_counter() - started)


def _sync_rate(url: str, jobs: int, threads: int, *, engine_running: bool) -> float:
    engine, noop = _engine(url)
    loop_ready, stop = threading.Event(), threading.Event()

    async def run_engine() -> None:
        async with engine.running():  # type: ignore[attr-defined]
            loop_ready.set()
            await asyncio.to_thread(stop.wait)

    runner = threading.Thread(target=asyncio.run, args=(run_engine(),)) if engine_running else None
    if runner is not None:
        runner.start()
        loop_ready.wait(30)
    noop.enqueue_sync(-1)  # type: ignore[attr-defined]  # connections opened before the clock starts
    per_thread = jobs // threads
    barrier = threading.Barrier(threads + 1)

    def enqueue_many(offset: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            noop.enqueue_sync(offset + i)  # type: ignore[attr-defined]

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(enqueue_many, t * per_thread) for t in range(threads)]
        barrier.wait()
        started = time.perf_counter()
        for future in futures:
            future.result()
        elapsed = time.perf_counter() - started
    stop.set()
    if runner is not None:
        runner.join()
    engine.close_sync()  # type: ignore[attr-defined]
    return per_thread * threads / elapsed


def _fresh_url(backend: str, name: str) -> tuple[str, Callable[[], None]]:
    if backend == "sqlite":
        path = Path(f"/tmp/{name}.db")

        def drop_file() -> None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

        drop_file()
        return f"sqlite:///{path}", drop_file
    from aiojobs_engine.pytest_plugin import postgres_test_database

    base = os.environ.get("AIOJOBS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    database = postgres_test_database(base, prefix="bench_sync")
    url = database.__enter__()
    return url, lambda: database.__exit__(None, None, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--jobs", type=int, default=5000)
    args = parser.parse_args()
    cases: list[tuple[str, Callable[[str], float]]] = [
        ("await enqueue(), 1 task", lambda url: asyncio.run(_async_rate(url, args.jobs))),
        ("enqueue_sync(), 1 thread", lambda url: _sync_rate(url, args.jobs, 1, engine_running=False)),
        (f"enqueue_sync(), {THREADS} threads", lambda url: _sync_rate(url, args.jobs, THREADS, engine_running=False)),
        (f"enqueue_sync(), {THREADS} threads, engine running",
         lambda url: _sync_rate(url, args.jobs, THREADS, engine_running=True)),
    ]
    baseline = None
    print(f"{args.backend}, {args.jobs} jobs per case")
    for index, (label, measure) in enumerate(cases):
        url, drop = _fresh_url(args.backend, f"bench_sync_{os.getpid()}_{index}")
        try:
            rate = measure(url)
        finally:
            drop()
        baseline = baseline or rate
        print(f"  {label:42} {rate:9.0f} jobs/s  {rate / baseline:5.2f}x")


if __name__ == "__main__":
    main()
