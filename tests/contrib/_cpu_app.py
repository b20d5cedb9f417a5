"""A CPU-bound job at module level (worker processes import it), for the tracing test."""

from __future__ import annotations

import os

from aiojobs_engine import Engine

engine = Engine(cpu_workers=1)


@engine.job(cpu_bound=True, timeout=30)
def crunch(n: int) -> dict:
    return {"sum": sum(range(n)), "pid": os.getpid()}
