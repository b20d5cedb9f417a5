"""Throughput and memory of aiojobs_engine with 1, 2 and all cores' worth of worker processes.

    python -m benchmarks.processes                      # 5,000 jobs, SQLite and (if reachable) PostgreSQL
    python -m benchmarks.processes --jobs 20000 --processes 1,2,4
    python -m benchmarks.processes --backend sqlite --json out.json

For each backend and process count: N no-op async jobs are queued in a paused queue, the
supervisor (`aiojobs work --processes P`) is started and its workers come up, then the
queue is resumed and timed until every job is completed ("drain"). The peak RSS of each
worker (VmHWM in /proc/<pid>/status, Linux) is read before the supervisor is stopped.
Each run starts from an empty jobs table (a fresh SQLite file; a cleared PostgreSQL
database this benchmark creates and drops).

Figures are jobs per second; "vs 1" divides by the one-process figure of the same backend.
On a shared 2-core machine absolute figures move by ±20 % between runs: compare within one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiojobs_engine import Engine, JobState
from aiojobs_engine._groups import available_cores
from benchmarks.bench import _drop_postgres_database, _postgres_database

ROOT = Path(__file__).resolve().parents[1]
APP = "benchmarks._process_app:engine"
QUEUE = "bench"


async def _enqueue(url: str, jobs: int) -> None:
    async with Engine(url) as engine:
        await engine.clear()
        await engine.pause_queue(QUEUE)
        for start in range(0, jobs, 5000):
            await engine.enqueue_many([engine.options(queue=QUEUE).new("noop", i)
                                       for i in range(start, min(jobs, start + 5000))])


def _read_state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _peak_rss_mib(pid: int) -> float | None:
    """VmHWM: the most resident memory the process ever had (Linux), in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


async def _drain(url: str, jobs: int, processes: int, folder: Path) -> dict[str, float]:
    await _enqueue(url, jobs)
    pidfile = folder / f"supervisor-{processes}.pid"
    state = pidfile.with_name(pidfile.name + ".json")
    supervisor = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aiojobs_engine", "work", "--app", APP, "--url", url, "--processes", str(processes),
        "--pidfile", str(pidfile), "--log-level", "error", cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 60
        while sum(1 for w in _read_state(state).get("workers", []) if w.get("running")) < processes:
            if supervisor.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the supervisor did not bring {processes} workers up")
            await asyncio.sleep(0.02)
        async with Engine(url) as engine:
            started = time.perf_counter()
            await engine.resume_queue(QUEUE)
            while True:
                completed = (await engine.count_jobs()).get((QUEUE, JobState.COMPLETED), 0)
                if completed >= jobs:
                    break
                await asyncio.sleep(0.01)
            elapsed = time.perf_counter() - started
        workers = [w["pid"] for w in _read_state(state).get("workers", []) if w.get("pid")]
        rss = [r for r in map(_peak_rss_mib, workers) if r is not None]
        supervisor_rss = _peak_rss_mib(supervisor.pid)
    finally:
        if supervisor.returncode is None:
            supervisor.send_signal(signal.SIGTERM)
        await asyncio.wait_for(supervisor.wait(), 60)
    return {
        "jobs_per_s": jobs / elapsed,
        "worker_rss_mib_max": max(rss, default=0.0),
        "worker_rss_mib_mean": sum(rss) / len(rss) if rss else 0.0,
        "supervisor_rss_mib": supervisor_rss or 0.0,
    }


async def run(jobs: int, counts: list[int], backends: list[str]) -> dict[str, dict[int, dict[str, float]]]:
    results: dict[str, dict[int, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        postgres = await _postgres_database() if "postgresql" in backends else None
        try:
            for backend in backends:
                if backend == "postgresql" and postgres is None:
                    continue
                results[backend] = {}
                for processes in counts:
                    url = postgres if backend == "postgresql" else f"sqlite:///{folder / f'bench-{processes}.db'}"
                    assert url is not None
                    results[backend][processes] = await _drain(url, jobs, processes, folder)
        finally:
            if postgres:
                await _drop_postgres_database(postgres)
    return results


def report(results: dict[str, dict[int, dict[str, float]]], jobs: int) -> str:
    lines = [f"{jobs:,} no-op jobs drained by `aiojobs work --processes P` ({available_cores()} cores)",
             f"{'backend':<11} {'processes':>9} {'jobs/s':>9} {'vs 1':>6} {'worker peak RSS':>16} "
             f"{'(mean)':>8} {'supervisor RSS':>15}"]
    for backend, by_count in results.items():
        single = by_count.get(min(by_count), {}).get("jobs_per_s") if by_count else None
        for processes, figures in by_count.items():
            ratio = f"{figures['jobs_per_s'] / single:.2f}" if single else ""
            lines.append(
                f"{backend:<11} {processes:>9} {figures['jobs_per_s']:>9.0f} {ratio:>6} "
                f"{figures['worker_rss_mib_max']:>12.1f} MiB {figures['worker_rss_mib_mean']:>8.1f} "
                f"{figures['supervisor_rss_mib']:>11.1f} MiB"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--processes", default=None,
                        help="comma-separated process counts (default: 1, 2 and the number of cores)")
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    counts = ([int(p) for p in args.processes.split(",")] if args.processes
              else sorted({1, 2, available_cores()}))
    results = asyncio.run(run(args.jobs, counts, args.backend or ["sqlite", "postgresql"]))
    print(report(results, args.jobs))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
