"""Recurring jobs: a schedule every two seconds, one every weekday morning in Berlin.

    python examples/cron.py

Runs an engine for about five seconds and prints the runs of the fast schedule; each run
links to the one before it. Start it several times at once against one database: every tick
still runs exactly once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiojobs_engine import Engine, current_job

engine = Engine("sqlite:///cron-example.sqlite3", poll_interval=0.5)


@engine.cron("*/2 * * * * *", name="heartbeat-report")  # six fields: seconds first
@engine.job(queue="maintenance")
async def report(source: str = "cron") -> str:
    return f"{source} run at {datetime.now(UTC):%H:%M:%S} (job {current_job().id})"


@engine.job(schedule="0 8 * * mon-fri", queue="maintenance")  # the same, as an argument
async def morning_digest() -> None: ...


engine.cron("0 8 * * mon-fri", name="digest-berlin", timezone="Europe/Berlin")(morning_digest)


async def main() -> None:
    async with engine:
        await engine.clear(queues=["maintenance"])
        for schedule in await engine.list_schedules():
            print(f"{schedule.name:<17} {schedule.expression:<16} {schedule.timezone:<14} next: {schedule.next_tick}")
        async with engine.running():
            await asyncio.sleep(5)
        runs = await engine.list_jobs(name="report", state="completed")
        for job in reversed(runs):
            print(f"  job {job.id} (after {job.rescheduled_from}): {job.result}")


if __name__ == "__main__":
    asyncio.run(main())
