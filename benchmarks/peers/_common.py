"""What every runner of ``benchmarks/compare.py`` shares: arguments, databases, memory, timing.

Each runner (``benchmarks/ours.py`` in the project's virtual environment, ``peer_*.py`` here
in the peers' one) is started once per scenario as its own process, so a process's peak
RSS belongs to that one scenario, and prints one JSON object as its last line of output.
This module needs only the standard library and asyncpg (both environments have it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

ADMIN_URL = os.environ.get("AIOJOBS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_HOST = os.environ.get("AIOJOBS_BENCH_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("AIOJOBS_BENCH_REDIS_PORT", "6379"))
QUEUE = "bench"


def parser(description: str, scenarios: list[str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("scenario", choices=scenarios)
    p.add_argument("--backend", default="postgresql", choices=["sqlite", "postgresql", "redis"])
    p.add_argument("--db", default="", help="PostgreSQL database name (created by `setup`), or SQLite file path")
    p.add_argument("--redis-db", type=int, default=0, help="Redis database number (must be empty at setup)")
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--samples", type=int, default=50)
    p.add_argument("--gap", type=float, default=1.0,
                   help="pickup latency: the idle pause before each sample is uniform in [0.02, 0.02 + gap] s")
    p.add_argument("--warmup", type=int, default=2, help="pickup latency: samples run first and dropped")
    p.add_argument("--rows", type=int, default=1_000_000, help="claim cost: rows of the large tables")
    p.add_argument("--rounds", type=int, default=300, help="claim cost: rounds per table")
    return p


def database_url(name: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


async def create_database(name: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(ADMIN_URL, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return database_url(name)


async def drop_database(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(ADMIN_URL, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def vacuum(name: str) -> None:
    """``VACUUM ANALYZE`` a benchmark database: what autovacuum would have done by now.

    The server this was measured on runs with autovacuum off, so without this each fill and
    drain left its dead rows (and their index entries, which every claim walks past) to the
    next run of the same engine: figures depended on how many runs came before, and on how
    many indexes an engine keeps.
    """
    import asyncpg

    conn = await asyncpg.connect(database_url(name), timeout=5)
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def server_version(name: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(database_url(name), timeout=5)
    try:
        return "PostgreSQL " + str(await conn.fetchval("SHOW server_version")).split()[0]
    finally:
        await conn.close()


def memory() -> dict[str, float]:
    """This process's resident memory now and at its peak (VmRSS, VmHWM; Linux), in MiB."""
    figures: dict[str, float] = {}
    try:
        with open(f"/proc/{os.getpid()}/status") as status:
            for line in status:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    figures[line[:5]] = int(line.split()[1]) / 1024
    except OSError:
        pass
    if "VmHWM" not in figures:  # not Linux: ru_maxrss is KiB on Linux, bytes on macOS
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        figures["VmHWM"] = peak / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return {"rss_mib": figures.get("VmRSS", 0.0), "peak_rss_mib": figures["VmHWM"]}


def summary(seconds: list[float]) -> dict[str, float]:
    """p50, p95 (nearest rank), mean, min, max of latencies, in milliseconds."""
    ordered = sorted(seconds)
    rank95 = max(0, min(len(ordered) - 1, round(0.95 * len(ordered) + 0.5) - 1))
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[rank95] * 1000,
        "mean_ms": statistics.fmean(ordered) * 1000,
        "min_ms": ordered[0] * 1000,
        "max_ms": ordered[-1] * 1000,
        "samples": len(ordered),
    }


def emit(figures: dict[str, Any]) -> None:
    print(json.dumps(figures), flush=True)


def run(main: Callable[[], Coroutine[Any, Any, dict[str, Any] | None]]) -> None:
    """Run a runner's coroutine on uvloop (every engine here is measured on uvloop) and print its figures."""
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        loop_name = "uvloop"
    except ImportError:  # pragma: no cover - both environments have it on Linux
        loop_name = "asyncio"
    figures = asyncio.run(main())
    if figures is not None:
        emit({**figures, "loop": loop_name})


# -- pickup latency ----------------------------------------------------------------------------

STARTED: dict[int, float] = {}
WAITERS: dict[int, asyncio.Event] = {}


def mark(i: int) -> None:
    """Called first thing in a latency job's body: when sample ``i`` started running."""
    STARTED.setdefault(i, time.perf_counter())
    waiter = WAITERS.get(i)
    if waiter is not None:
        waiter.set()


async def pickup_latency(enqueue: Callable[[int], Awaitable[object]], samples: int, gap: float,
                         warmup: int = 2, timeout: float = 15.0) -> dict[str, float]:
    """Enqueue one job at a time into an idle engine; time from the enqueue call to the body's start.

    Before each sample the engine is left idle for a random pause, uniform in [0.02, 0.02 + gap]
    seconds, so a polling engine is caught at a random phase of its poll period (seeded: every
    engine gets the same pauses). The first ``warmup`` samples (connections, caches) are dropped.
    """
    rng = random.Random(7)
    latencies = []
    for i in range(warmup + samples):
        WAITERS[i] = asyncio.Event()
        await asyncio.sleep(0.02 + rng.uniform(0, gap))
        started = time.perf_counter()
        await enqueue(i)
        await asyncio.wait_for(WAITERS[i].wait(), timeout)
        if i >= warmup:
            latencies.append(STARTED[i] - started)
    return summary(latencies)


if __name__ == "__main__":  # compare.py: python _common.py vacuum <database>
    if sys.argv[1:2] != ["vacuum"] or len(sys.argv) != 3:
        sys.exit("usage: _common.py vacuum DATABASE")
    asyncio.run(vacuum(sys.argv[2]))
