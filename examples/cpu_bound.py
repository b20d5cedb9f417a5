"""CPU-bound jobs run in supervised worker processes, one per core by default.

    python examples/cpu_bound.py

A worker that crashes or runs past its timeout is killed and replaced; only its own job
fails. Scripts that declare CPU-bound jobs need the ``if __name__ == "__main__":`` guard,
as every multiprocessing program does: worker processes import this module.
"""

from __future__ import annotations

import asyncio
import os

from aiojobs_engine import Engine

engine = Engine("sqlite:///cpu-example.sqlite3")


@engine.job(queue="reports", cpu_bound=True, timeout=60)
def count_primes(limit: int) -> dict:
    sieve = bytearray([1]) * (limit + 1)
    sieve[0:2] = b"\x00\x00"
    for n in range(2, int(limit**0.5) + 1):
        if sieve[n]:
            sieve[n * n :: n] = bytes(len(range(n * n, limit + 1, n)))
    return {"limit": limit, "primes": sum(sieve), "worker_pid": os.getpid()}


@engine.job(queue="reports", cpu_bound=True, timeout=0.5, max_attempts=1)
def runaway() -> None:
    while True:  # never ends: the engine kills this worker after 0.5 s
        pass


async def main() -> None:
    async with engine:
        await engine.clear(queues=["reports"])
        records = [await count_primes.enqueue(n) for n in (100_000, 200_000, 300_000, 400_000)]
        stuck = await runaway.enqueue()
        await engine.workoff()
        print(f"engine pid {os.getpid()}")
        for record in [*records, stuck]:
            assert record is not None
            job = await engine.get_job(record.id)
            assert job is not None
            detail = job.result if job.result is not None else job.errors[-1]["message"]
            print(f"  job {job.id} {job.name:<12} {job.state:<10} {detail}")


if __name__ == "__main__":
    asyncio.run(main())
