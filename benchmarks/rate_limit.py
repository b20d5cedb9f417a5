"""Does a rate-limited queue reach its limit? And never pass it?

    .venv/bin/python benchmarks/rate_limit.py --backend sqlite --rate 1000 --jobs 5000
    .venv/bin/python benchmarks/rate_limit.py --backend postgresql --rate 1000 --jobs 5000 --engines 2

Enqueues ``--jobs`` no-op jobs into a queue limited to ``--rate`` starts a second, drains it
with ``--engines`` engines (each at concurrency 100), and prints, from the jobs' stored start
times: the rate sustained from the first start to one window after the last (starts come in a
burst as each window opens), as a share of the limit, and the most starts seen in any
one-second window (which must not pass the limit).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from aiojobs_engine import Engine, QueueConfig


def most_in_any_window(starts: list[datetime], seconds: float) -> int:
    ordered, most, first = sorted(starts), 0, 0
    for last, moment in enumerate(ordered):
        while ordered[first] <= moment - timedelta(seconds=seconds):
            first += 1
        most = max(most, last - first + 1)
    return most


def _engine(url: str, rate: int) -> Engine:
    engine = Engine(url, queues={"api": QueueConfig(concurrency=100, rate_limit=(rate, 1.0))})

    @engine.job(queue="api")
    async def noop(n: int) -> None: ...

    return engine


async def measure(url: str, rate: int, jobs: int, engines: int) -> str:
    first = _engine(url, rate)
    async with first:
        for start in range(0, jobs, 1000):
            await first.enqueue_many([first.new("noop", n) for n in range(start, min(jobs, start + 1000))])
    workers = [_engine(url, rate) for _ in range(engines)]
    began = time.perf_counter()
    await asyncio.gather(*(worker.workoff() for worker in workers))
    wall = time.perf_counter() - began
    async with first:
        starts = [j.attempted_at for j in await first.list_jobs(limit=10_000) if j.attempted_at is not None]
    # Starts come in bursts as each window opens: n starts at the limit fill n / rate windows,
    # the last of which begins at the last burst, so they take (last - first) + one window.
    span = (max(starts) - min(starts)).total_seconds() + 1.0
    sustained = len(starts) / span
    return (f"{len(starts)} jobs, limit {rate}/s, {engines} engine(s): sustained {sustained:,.0f}/s "
            f"({sustained / rate:.1%} of the limit) over {span:.2f} s (wall, enqueue excluded: {wall:.2f} s); "
            f"most in any 1 s window: {most_in_any_window(starts, 1.0)}")


def _fresh_url(backend: str) -> tuple[str, Callable[[], None]]:
    if backend == "sqlite":
        path = Path(f"/tmp/bench_rate_{os.getpid()}.db")

        def drop() -> None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

        return f"sqlite:///{path}", drop
    from aiojobs_engine.pytest_plugin import postgres_test_database

    base = os.environ.get("AIOJOBS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    database = postgres_test_database(base, prefix="bench_rate")
    return database.__enter__(), lambda: database.__exit__(None, None, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rate", type=int, default=1000, help="starts a second")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--engines", type=int, default=1)
    args = parser.parse_args()
    url, drop = _fresh_url(args.backend)
    try:
        print(f"{args.backend}: {asyncio.run(measure(url, args.rate, args.jobs, args.engines))}")
    finally:
        drop()


if __name__ == "__main__":
    main()
