"""Quick start: declare jobs, enqueue a few, run them, print what happened.

    python examples/quickstart.py

Uses the default database, ./aiojobs.sqlite3 (or $AIOJOBS_DATABASE_URL).
"""

from __future__ import annotations

import asyncio
import random

from aiojobs_engine import Engine, Job, current_job

engine = Engine(poll_interval=0.2)


@engine.job(queue="email", max_attempts=3, timeout=10)
async def send_welcome(user_id: int) -> dict:
    await asyncio.sleep(0.05)  # talk to the mail service here
    return {"sent_to": user_id}


@engine.job(max_attempts=3, retry=lambda attempt: 0.1)
async def flaky_sync(account: str) -> str:
    if current_job().attempt < 2 and random.random() < 0.9:
        raise ConnectionError("the remote API hung up")
    return f"{account} synced on attempt {current_job().attempt}"


@engine.job()
def resize_avatar(user_id: int, size: int = 128) -> str:
    # A plain function runs in a thread, so blocking calls do not stall the engine.
    return f"avatar-{user_id}-{size}px.png"


@engine.job(queue="reports")
class MonthlyReport(Job):
    def __init__(self, tenant: str) -> None:
        self.tenant = tenant

    async def run(self, month: str) -> str:
        return f"report for {self.tenant}, {month}"


async def main() -> None:
    async with engine:
        records = [
            await send_welcome.enqueue(42),
            await flaky_sync.enqueue("acme"),
            await resize_avatar.enqueue(42, size=256),
            await MonthlyReport.options(constructor_args=["acme"]).enqueue("2026-11"),
        ]
        print(f"enqueued {len(records)} jobs into {engine.url}")
        ran = await engine.workoff()
        await asyncio.sleep(0.2)  # let a retry in backoff come due, then run it too
        ran += await engine.workoff()
        print(f"ran {ran} attempts")
        for record in records:
            assert record is not None
            job = await engine.get_job(record.id)
            assert job is not None
            errors = f" after {len(job.errors)} failed attempt(s)" if job.errors else ""
            print(f"  job {job.id} {job.name:<14} {job.state:<10} {job.result!r}{errors}")


if __name__ == "__main__":
    asyncio.run(main())
