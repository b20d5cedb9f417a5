"""The application `benchmarks/processes.py` runs in its worker processes: one no-op job."""

from __future__ import annotations

from aiojobs_engine import Engine, QueueConfig

engine = Engine(queues={"bench": QueueConfig(concurrency=50)}, poll_interval=0.1)


@engine.job(queue="bench")
async def noop(i: int) -> None:
    return None
