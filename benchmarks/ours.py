"""aiojobs_engine's side of ``benchmarks/compare.py``: one scenario per process, one JSON line out.

    .venv/bin/python benchmarks/ours.py drain --backend sqlite --db /tmp/x.db --jobs 10000 --concurrency 10

Run by compare.py in the project's own virtual environment. Scenarios:
  setup / teardown  create / drop this runner's PostgreSQL database (SQLite: a file compare.py names)
  enqueue           N jobs one by one (each ``await noop.enqueue(i)``), then N in one ``enqueue_many``
  fill              N no-op jobs queued in bulk (the input of ``drain``, in a process of its own)
  drain             ``workoff()`` of the N queued jobs, queue concurrency C; the process's peak RSS
  latency           an engine in ``running()``, a second Engine object enqueues: enqueue -> body start
  cpu               N CPU-bound jobs through the supervised process pool vs a plain ProcessPoolExecutor
  raw-enqueue       the least SQL an enqueue needs: an INSERT loop, and one bulk INSERT (our table)
  raw-drain         the least SQL a claim-and-complete needs (bench.py's loop: claim 100, complete them)
  raw-latency       PostgreSQL: INSERT + NOTIFY in one statement -> a LISTEN callback (the floor)
  claim             benchmarks/claim_cost.py: claim+complete 10 with 10k / --rows waiting / --rows finished
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiojobs_engine import Engine, EventKind, JobEvent, QueueConfig  # noqa: E402
from benchmarks import _cpu_app  # noqa: E402
from benchmarks.peers import _common  # noqa: E402

SCENARIOS = ["setup", "teardown", "enqueue", "fill", "drain", "latency", "cpu", "raw-enqueue", "raw-drain",
             "raw-latency", "claim"]
QUEUE = _common.QUEUE
CPU_WORK = 10_000  # crunch(10_000): about half a millisecond of pure Python


def _url(args: Any) -> str:
    if args.backend == "sqlite":
        return f"sqlite:///{os.path.abspath(args.db)}"
    return _common.database_url(args.db)


HANDLES: dict[str, Any] = {}


def _engine(url: str, concurrency: int = 10, **settings: Any) -> Engine:
    """An engine working the bench queue, with the two bodies the scenarios run (handles in HANDLES)."""
    engine = Engine(url, queues={QUEUE: QueueConfig(concurrency=concurrency)}, **settings)

    @engine.job(queue=QUEUE)
    async def noop(i: int) -> None:
        return None

    @engine.job(queue=QUEUE)
    async def stamp(i: int) -> None:
        _common.mark(i)

    HANDLES.update(noop=noop, stamp=stamp)
    return engine


async def _fill(url: str, jobs: int, name: str = "noop") -> None:
    async with _engine(url) as engine:
        await engine.clear()
        for start in range(0, jobs, 5000):
            await engine.enqueue_many([engine.options(queue=QUEUE).new(name, i)
                                       for i in range(start, min(jobs, start + 5000))])


async def enqueue(args: Any) -> dict[str, Any]:
    engine = _engine(_url(args))
    noop = HANDLES["noop"]
    async with engine:
        await engine.clear()
        started = time.perf_counter()
        for i in range(args.jobs):
            await noop.enqueue(i)
        single = time.perf_counter() - started
        await engine.clear()
        started = time.perf_counter()
        await engine.enqueue_many([noop.new(i) for i in range(args.jobs)])
        bulk = time.perf_counter() - started
        await engine.clear()
    return {"single_jobs_per_s": args.jobs / single, "bulk_jobs_per_s": args.jobs / bulk, "jobs": args.jobs,
            "how": "single: await noop.enqueue(i) in a loop; bulk: enqueue_many([noop.new(i) ...]), building included"}


class _LastCompletion:
    """Stamps the moment of each ``job.completed`` event: emitted once the outcome is stored."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        self.at = 0.0
        engine.subscribe(self, kinds={EventKind.JOB_COMPLETED})

    def __call__(self, event: JobEvent) -> None:
        self.count += 1
        self.at = time.perf_counter()


async def _timed_workoff(engine: Engine, jobs: int) -> dict[str, float]:
    """workoff(), timed to the last stored completion (the span peers are timed on) and to its return."""
    last = _LastCompletion(engine) if os.environ.get("AIOJOBS_BENCH_NO_LISTENER") != "1" else None
    started = time.perf_counter()
    ran = await engine.workoff()
    returned = time.perf_counter() - started
    if ran != jobs:
        raise RuntimeError(f"workoff ran {ran} attempts, expected {jobs}")
    span = (last.at - started) if last is not None and last.count == jobs else returned
    return {"jobs_per_s": jobs / span, "seconds": span, "workoff_seconds": returned,
            "workoff_jobs_per_s": jobs / returned}


async def drain(args: Any) -> dict[str, Any]:
    engine = _engine(_url(args), args.concurrency)
    async with engine:
        before = _common.memory()
        figures = await _timed_workoff(engine, args.jobs)
    return {**figures, "jobs": args.jobs, "rss_before_mib": before["rss_mib"], **_common.memory(),
            "how": f"Engine(url, queues={{'bench': QueueConfig(concurrency={args.concurrency})}}).workoff(), "
                   "timed from the call to the last job.completed event"}


async def latency(args: Any) -> dict[str, Any]:
    url = _url(args)
    await _fill(url, 0)
    worker = _engine(url)          # default settings: poll_interval 1.0 (PostgreSQL also wakes on NOTIFY)
    client = Engine(url)           # a second Engine object, as a web process would have
    async with worker.running(), client:
        async def enqueue(i: int) -> None:
            await client.options(queue=QUEUE).enqueue("stamp", i)

        figures = await _common.pickup_latency(enqueue, args.samples, args.gap, args.warmup)
    return {**figures, "how": "engine.running(); a second Engine enqueues by name; default poll_interval 1.0"}


async def cpu(args: Any) -> dict[str, Any]:
    url = _url(args)
    engine = Engine(url, queues={"cpu": QueueConfig(concurrency=10)})
    engine.job(queue="cpu", cpu_bound=True, name="crunch")(_cpu_app.crunch)
    workers = engine.settings.cpu_worker_count
    async with engine:
        await engine.clear()
        await engine.enqueue_many([engine.options(queue="cpu").new("crunch", CPU_WORK) for _ in range(args.jobs)])
        ours = (await _timed_workoff(engine, args.jobs))["seconds"]
        await engine.clear()
    import concurrent.futures  # here, not at the top: the drain's RSS must not carry them
    import multiprocessing

    # Baseline: the stdlib pool, spawned as ours is, cold as ours is (ours starts its workers
    # in each workoff), every job submitted at once: no database, no supervision, no limit.
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        await asyncio.gather(*[loop.run_in_executor(pool, _cpu_app.crunch, CPU_WORK) for _ in range(args.jobs)])
    baseline = time.perf_counter() - started
    return {"jobs_per_s": args.jobs / ours, "baseline_jobs_per_s": args.jobs / baseline, "jobs": args.jobs,
            "workers": workers, "overhead_us_per_job": (ours - baseline) / args.jobs * 1e6,
            "job_ms_alone": _time_one_crunch() * 1000}


def _time_one_crunch() -> float:
    started = time.perf_counter()
    for _ in range(20):
        _cpu_app.crunch(CPU_WORK)
    return (time.perf_counter() - started) / 20


async def raw_enqueue(args: Any) -> dict[str, Any]:
    url = _url(args)
    await _fill(url, 0)  # creates the schema
    if args.backend == "sqlite":
        single, bulk = await _raw_insert_sqlite(args.db, args.jobs)
    else:
        single, bulk = await _raw_insert_postgres(url, args.jobs)
    await _fill(url, 0)
    return {"single_jobs_per_s": args.jobs / single, "bulk_jobs_per_s": args.jobs / bulk, "jobs": args.jobs,
            "how": "INSERT of (queue, name, args, times) into aiojobs_jobs: one autocommit statement per job; "
                   "then all N in one transaction"}


async def _raw_insert_sqlite(path: str, jobs: int) -> tuple[float, float]:
    import aiosqlite

    now = int(time.time() * 1e6)
    sql = "INSERT INTO aiojobs_jobs (queue, name, args, inserted_at, available_at) VALUES (?, ?, ?, ?, ?)"
    async with aiosqlite.connect(path, isolation_level=None) as conn:
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = FULL")  # the engine's own durability setting
        started = time.perf_counter()
        for i in range(jobs):
            await conn.execute(sql, (QUEUE, "noop", f"[{i}]", now, now))
        single = time.perf_counter() - started
        await conn.execute("DELETE FROM aiojobs_jobs")
        started = time.perf_counter()
        await conn.execute("BEGIN")
        await conn.executemany(sql, [(QUEUE, "noop", f"[{i}]", now, now) for i in range(jobs)])
        await conn.execute("COMMIT")
        bulk = time.perf_counter() - started
    return single, bulk


async def _raw_insert_postgres(url: str, jobs: int) -> tuple[float, float]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        sql = ("INSERT INTO aiojobs_jobs (queue, name, args, inserted_at, available_at) "
               "VALUES ($1, $2, $3, now(), now())")
        started = time.perf_counter()
        for i in range(jobs):
            await conn.execute(sql, QUEUE, "noop", f"[{i}]")
        single = time.perf_counter() - started
        await conn.execute("TRUNCATE aiojobs_jobs")
        started = time.perf_counter()
        await conn.execute(
            "INSERT INTO aiojobs_jobs (queue, name, args, inserted_at, available_at) "
            "SELECT $1, $2, a::jsonb, now(), now() FROM unnest($3::text[]) AS a",
            QUEUE, "noop", [f"[{i}]" for i in range(jobs)])
        bulk = time.perf_counter() - started
    finally:
        await conn.close()
    return single, bulk


async def raw_drain(args: Any) -> dict[str, Any]:
    from benchmarks import bench

    url = _url(args)
    await _fill(url, args.jobs)
    if args.backend == "postgresql":
        await _common.vacuum(args.db)  # as compare.py does after every fill
    if args.backend == "sqlite":
        rate = await bench._raw_sqlite(_url(args).removeprefix("sqlite:///"), args.jobs)
    else:
        rate = await bench._raw_postgres(url, args.jobs)
    await _fill(url, 0)
    return {"jobs_per_s": rate, "jobs": args.jobs,
            "how": "loop: claim 100 (UPDATE ... SKIP LOCKED ... RETURNING id), complete them in one UPDATE"}


async def raw_latency(args: Any) -> dict[str, Any]:
    import asyncpg

    url = _url(args)
    await _fill(url, 0)
    listener = await asyncpg.connect(url)
    sender = await asyncpg.connect(url)
    try:
        await listener.add_listener("aiojobs_raw_bench", lambda *_: _common.mark(int(_[3])))
        sql = ("WITH ins AS (INSERT INTO aiojobs_jobs (queue, name, args, inserted_at, available_at) "
               "VALUES ($1, 'noop', $2::jsonb, now(), now()) RETURNING id) "
               "SELECT pg_notify('aiojobs_raw_bench', $3) FROM ins")

        async def enqueue(i: int) -> None:
            await sender.execute(sql, QUEUE, f"[{i}]", str(i))

        figures = await _common.pickup_latency(enqueue, args.samples, args.gap, args.warmup)
    finally:
        await listener.close()
        await sender.close()
    await _fill(url, 0)
    return {**figures, "how": "INSERT ... RETURNING + pg_notify in one autocommit statement -> LISTEN callback"}


async def claim(args: Any) -> dict[str, Any]:
    from benchmarks import claim_cost

    claim_cost.ROUNDS = args.rounds
    claim_cost.SMALL = min(claim_cost.SMALL, args.rows)
    figures = await claim_cost.measure(_url(args), args.rows)
    return {"ms": {k: v * 1000 for k, v in figures.items()}, "rows": args.rows, "small": claim_cost.SMALL,
            "rounds": args.rounds}


async def setup(args: Any) -> dict[str, Any]:
    import importlib.metadata
    import sqlite3

    if args.backend == "postgresql":
        await _common.create_database(args.db)
    async with _engine(_url(args)) as engine:
        await engine.clear()
    return {"version": importlib.metadata.version("aiojobs_engine"),
            "server": await _common.server_version(args.db) if args.backend == "postgresql"
            else f"SQLite {sqlite3.sqlite_version}"}


async def teardown(args: Any) -> dict[str, Any]:
    if args.backend == "postgresql":
        await _common.drop_database(args.db)
    else:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(args.db + suffix)
    return {}


def main() -> None:
    args = _common.parser(__doc__ or "", SCENARIOS).parse_args()
    handler = fill if args.scenario == "fill" else globals()[args.scenario.replace("-", "_")]
    _common.run(lambda: handler(args))


async def fill(args: Any) -> dict[str, Any]:
    await _fill(_url(args), args.jobs)
    return {"jobs": args.jobs}


if __name__ == "__main__":
    main()
