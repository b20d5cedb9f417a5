"""CPU per job of a drain, for comparing two commits on a noisy machine.

    .venv/bin/python benchmarks/cpu_per_job.py --backend sqlite --concurrency 100
    .venv/bin/python benchmarks/cpu_per_job.py --root /path/to/other/checkout ...

Fills ``--jobs`` no-op jobs (``benchmarks/ours.py``'s fill), then times ``workoff()`` at the
given concurrency, as ``compare.py``'s drain does, and prints one line: jobs per second and the
process's CPU time per job (user + system, from getrusage, around the workoff only). CPU per
job moves less than wall time when other work shares the machine. ``--root`` runs the engine
and benchmarks of another checkout (say, the commit before a change), in this interpreter;
run both alternately several times and compare medians.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
from pathlib import Path


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(root: Path, backend: str, concurrency: int, jobs: int) -> str:
    from benchmarks import ours  # the chosen checkout's (see main)

    name = f"cpu_per_job_{os.getpid()}"
    db = f"/tmp/{name}.db" if backend == "sqlite" else name
    args = argparse.Namespace(backend=backend, db=db)
    if backend == "postgresql":
        await ours.setup(args)
    url = ours._url(args)
    try:
        await ours._fill(url, jobs)
        if backend == "postgresql":  # as compare.py does after each fill
            command = [sys.executable, str(root / "benchmarks" / "peers" / "_common.py"), "vacuum", db]
            await asyncio.to_thread(subprocess.run, command, check=True, env={**os.environ, "PYTHONPATH": str(root)})
        engine = ours._engine(url, concurrency)
        cpu = _cpu_seconds()
        result = await ours._timed_workoff(engine, jobs)
        cpu = _cpu_seconds() - cpu
        return (f"{root.name:12} {backend:10} c{concurrency:<4} {result['jobs_per_s']:8.0f} jobs/s "
                f"{1e6 * cpu / jobs:7.1f} us CPU/job")
    finally:
        if backend == "postgresql":
            await ours.teardown(args)
        else:
            for suffix in ("", "-wal", "-shm"):
                await asyncio.to_thread(Path(db + suffix).unlink, missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the checkout whose engine is measured (default: this one)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=10_000)
    args = parser.parse_args()
    root = args.root.resolve()
    sys.path.insert(0, str(root))  # before the installed package: that checkout's engine and benchmarks
    import uvloop

    print(uvloop.run(measure(root, args.backend, args.concurrency, args.jobs)))


if __name__ == "__main__":
    main()
