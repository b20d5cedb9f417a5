"""An application for the CLI tests: a module-level engine with a few jobs.

The tests point it at their own database with ``--url``.
"""

from __future__ import annotations

import asyncio

from aiojobs_engine import Engine

engine = Engine()


@engine.job
async def add(x: int, y: int) -> int:
    return x + y


@engine.job(max_attempts=1)
async def boom() -> None:
    raise ValueError("boom on purpose")


@engine.job
async def slow(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@engine.job
async def loop_kind() -> str:
    """Which event loop runs the jobs (the CLI prefers uvloop)."""
    return type(asyncio.get_running_loop()).__module__


@engine.job
async def stop_worker() -> None:
    """Ends `aiojobs work` from inside: stop() called by a job asks and returns at once."""
    await engine.stop()


# For --app tests: an engine reached through a dotted attribute, and something that is not
# an engine.
class Holder:
    engine = engine


not_an_engine = "not an engine"
