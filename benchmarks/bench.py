"""Throughput of aiojobs_engine against the raw SQL ceiling of each backend, in one run.

    python benchmarks/bench.py                 # SQLite and (if reachable) PostgreSQL
    python benchmarks/bench.py --jobs 2000     # fewer jobs
    python benchmarks/bench.py --json out.json # also save the figures

Scenarios, each on each backend:
  enqueue-single  N jobs enqueued one by one from one task (one awaited round trip each)
  enqueue-bulk    N jobs in one enqueue_many
  drain-c10/c100  N no-op async jobs drained by one engine with queue concurrency 10 / 100
  raw-ceiling     the least SQL a claim-and-complete needs (claim a batch of 100, mark them
                  completed in one statement), from a hand-written loop: the limit to compare
                  the drain against

Figures are jobs per second; the ratio column divides by the raw figure of the same backend.
Absolute figures move by ±20 % between runs on a shared machine: compare ratios, within one run.
Peer engines (procrastinate, pgqueuer, arq, saq) are compared in the benchmark suite of issue 7.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from aiojobs_engine import Engine, QueueConfig

POSTGRES_URL = os.environ.get("AIOJOBS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _postgres_database() -> str | None:
    try:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=3)
    except Exception:
        return None
    name = f"aiojobs_bench_{os.getpid()}"
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"


async def _drop_postgres_database(url: str) -> None:
    conn = await asyncpg.connect(POSTGRES_URL, timeout=3)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()


def _engine(url: str, concurrency: int) -> Engine:
    engine = Engine(url, queues={"bench": QueueConfig(concurrency=concurrency)}, poll_interval=0.5)

    @engine.job(queue="bench")
    async def noop(i: int) -> None:
        return None

    return engine


async def _enqueue(url: str, jobs: int) -> dict[str, float]:
    engine = _engine(url, 10)
    async with engine:
        await engine.clear()
        started = time.perf_counter()
        for i in range(jobs):
            await engine.enqueue("noop", i)
        single = jobs / (time.perf_counter() - started)
        await engine.clear()
        requests = [engine.options(queue="bench").new("noop", i) for i in range(jobs)]
        started = time.perf_counter()
        await engine.enqueue_many(requests)
        bulk = jobs / (time.perf_counter() - started)
        await engine.clear()
    return {"enqueue-single": single, "enqueue-bulk": bulk}


async def _drain(url: str, jobs: int, concurrency: int) -> float:
    engine = _engine(url, concurrency)
    async with engine:
        await engine.clear()
        await engine.enqueue_many([engine.options(queue="bench").new("noop", i) for i in range(jobs)])
        started = time.perf_counter()
        ran = await engine.workoff()
        elapsed = time.perf_counter() - started
        assert ran == jobs, (ran, jobs)
        await engine.clear()
    return jobs / elapsed


async def _raw_ceiling(url: str, jobs: int) -> float:
    """Claim 100 and complete them in one statement each, directly on the engine's schema."""
    engine = _engine(url, 100)
    async with engine:
        await engine.clear()
        await engine.enqueue_many([engine.options(queue="bench").new("noop", i) for i in range(jobs)])
    if url.startswith("sqlite"):
        return await _raw_sqlite(url.removeprefix("sqlite:///"), jobs)
    return await _raw_postgres(url, jobs)


async def _raw_sqlite(path: str, jobs: int) -> float:
    import aiosqlite

    conn = await aiosqlite.connect(path, isolation_level=None)
    await conn.execute("PRAGMA synchronous = FULL")
    done = 0
    started = time.perf_counter()
    while done < jobs:
        rows = await conn.execute_fetchall(
            "UPDATE aiojobs_jobs SET state = 'running', claim_token = 'x' WHERE id IN (SELECT id FROM aiojobs_jobs "
            "WHERE state = 'waiting' AND queue = 'bench' ORDER BY priority, available_at, id LIMIT 100) RETURNING id"
        )
        ids = [row[0] for row in rows]
        await conn.execute(
            f"UPDATE aiojobs_jobs SET state = 'completed' WHERE id IN ({','.join('?' * len(ids))})", ids
        )
        done += len(ids)
    elapsed = time.perf_counter() - started
    await conn.close()
    return jobs / elapsed


async def _raw_postgres(url: str, jobs: int) -> float:
    conn = await asyncpg.connect(url)
    done = 0
    started = time.perf_counter()
    while done < jobs:
        rows = await conn.fetch(
            "WITH picked AS (SELECT id FROM aiojobs_jobs WHERE state = 'waiting' AND queue = 'bench' "
            "ORDER BY priority, available_at, id LIMIT 100 FOR UPDATE SKIP LOCKED) "
            "UPDATE aiojobs_jobs j SET state = 'running', claim_token = gen_random_uuid() FROM picked "
            "WHERE j.id = picked.id RETURNING j.id"
        )
        ids = [row[0] for row in rows]
        await conn.execute("UPDATE aiojobs_jobs SET state = 'completed' WHERE id = ANY($1::bigint[])", ids)
        done += len(ids)
    elapsed = time.perf_counter() - started
    await conn.close()
    return jobs / elapsed


async def run(jobs: int, backends: list[str]) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        urls = {"sqlite": f"sqlite:///{Path(folder) / 'bench.db'}"}
        postgres = await _postgres_database() if "postgresql" in backends else None
        if postgres:
            urls["postgresql"] = postgres
        try:
            for backend, url in urls.items():
                if backend not in backends:
                    continue
                figures = await _enqueue(url, jobs)
                figures["drain-c10"] = await _drain(url, jobs, 10)
                figures["drain-c100"] = await _drain(url, jobs, 100)
                figures["raw-ceiling"] = await _raw_ceiling(url, jobs)
                results[backend] = figures
        finally:
            if postgres:
                await _drop_postgres_database(postgres)
    return results


def report(results: dict[str, dict[str, float]]) -> str:
    lines = [f"{'backend':<11} {'scenario':<15} {'jobs/s':>10} {'vs raw':>8}"]
    for backend, figures in results.items():
        raw = figures["raw-ceiling"]
        for scenario, value in figures.items():
            ratio = f"{value / raw:.2f}" if scenario.startswith("drain") else ""
            lines.append(f"{backend:<11} {scenario:<15} {value:>10.0f} {ratio:>8}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.jobs, args.backend or ["sqlite", "postgresql"]))
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
