"""A CPU-bound job whose module takes a while to import (a big library, say)."""

from __future__ import annotations

import time

from aiojobs_engine import Engine

time.sleep(1.5)

engine = Engine(cpu_workers=1)


@engine.job(cpu_bound=True, timeout=1.0, max_attempts=1)
def quick() -> str:
    return "fast, once imported"
