"""CPU-bound jobs for the process-pool tests: module level, so worker processes can import them."""

from __future__ import annotations

import ctypes
import os
import time

from aiojobs_engine import Engine, Job, Retry, current_job

engine = Engine(cpu_workers=2)


@engine.job(cpu_bound=True, timeout=20)
def crunch(n: int) -> dict:
    return {"sum": sum(range(n)), "pid": os.getpid(), "attempt": current_job().attempt}


@engine.job(cpu_bound=True, timeout=0.5, max_attempts=1)
def runaway() -> None:
    while True:
        pass


@engine.job(cpu_bound=True, max_attempts=1)
def exits() -> None:
    os._exit(3)


@engine.job(cpu_bound=True, max_attempts=1)
def segfaults() -> None:
    ctypes.string_at(0)


@engine.job(cpu_bound=True, max_attempts=1)
def raises(message: str) -> None:
    raise ValueError(message)


@engine.job(cpu_bound=True, max_attempts=3)
def retries_once() -> int:
    if current_job().attempt == 1:
        raise Retry(delay=0)
    return current_job().attempt


@engine.job(cpu_bound=True)
def returns_set() -> object:
    return {1, 2}


@engine.job(cpu_bound=True, timeout=30)
def sleeps(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


@engine.job(cpu_bound=True)
class Square(Job):
    def __init__(self, offset: int) -> None:
        self.offset = offset

    def run(self, x: int) -> int:
        return x * x + self.offset
