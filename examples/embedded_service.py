"""An asyncio service that embeds the engine: its own work and the job engine on one loop.

    python examples/embedded_service.py

The service produces work for a few seconds, the engine (running in the background with
``engine.running()``) processes it, and both stop cleanly; Ctrl-C stops early.
"""

from __future__ import annotations

import asyncio

from aiojobs_engine import Engine, QueueConfig

engine = Engine("sqlite:///embedded-example.sqlite3",
                queues={"ingest": QueueConfig(concurrency=4)}, poll_interval=0.5)


@engine.job(queue="ingest", max_attempts=3)
async def ingest(batch: int) -> int:
    await asyncio.sleep(0.05)  # parse, enrich, store…
    return batch * 100


async def produce(batches: int) -> list[int]:
    ids = []
    for batch in range(batches):
        record = await ingest.enqueue(batch)
        assert record is not None
        ids.append(record.id)
        await asyncio.sleep(0.02)
    return ids


async def main() -> None:
    async with engine.running():
        ids = await produce(10)
        done = [await engine.wait_for(job_id, timeout=30) for job_id in ids]
        print(f"processed {sum(1 for job in done if job.state == 'completed')}/{len(ids)} batches:",
              [job.result for job in done])


if __name__ == "__main__":
    asyncio.run(main())
