"""The application of the end-to-end tests: run by real `aiojobs work` processes.

Settings come from $AIOJOBS_TEST_SETTINGS (JSON); every attempt is appended to the ledger
file $AIOJOBS_TEST_LEDGER as one line: "<event> <job id> <attempt> <pid>".
"""

from __future__ import annotations

import asyncio
import json
import os

from aiojobs_engine import Engine, current_job

engine = Engine(**json.loads(os.environ.get("AIOJOBS_TEST_SETTINGS", "{}")))


def ledger(event: str) -> None:
    job = current_job()
    line = f"{event} {job.id} {job.attempt} {os.getpid()}\n"
    # O_APPEND writes of one short line are atomic across processes.
    with open(os.environ["AIOJOBS_TEST_LEDGER"], "a", encoding="utf-8") as file:
        file.write(line)


@engine.job(max_attempts=5)
async def record(n: int) -> int:
    ledger("run")
    await asyncio.sleep(0.001)
    return n


def started_before() -> bool:
    """Has an earlier run of this job (any attempt, any process) started?"""
    with open(os.environ["AIOJOBS_TEST_LEDGER"], encoding="utf-8") as file:
        return any(line.split()[:2] == ["start", str(current_job().id)] for line in file)


@engine.job(max_attempts=5)
async def slow(seconds: float, first_run_only: bool = False) -> int:
    """Sleeps; with first_run_only, runs after the first return at once."""
    again = started_before()
    ledger("start")
    if not (first_run_only and again):
        await asyncio.sleep(seconds)
    ledger("end")
    return os.getpid()


@engine.job(max_attempts=5)
async def blocks_loop(seconds: float) -> int:
    """Blocks the event loop (a common bug); runs after the first return at once."""
    again = started_before()
    ledger("start")
    if not again:
        import time

        time.sleep(seconds)
    ledger("end")
    return os.getpid()


@engine.job(max_attempts=5, concurrency_key=lambda key, seconds: key)
async def keyed(key: str, seconds: float) -> int:
    """A job of the concurrency key ``key`` (derived from its arguments) whose work takes ``seconds``."""
    ledger("start")
    await asyncio.sleep(seconds)
    ledger("end")
    return os.getpid()
