"""What the end-to-end tests share: real `aiojobs work` processes on a test database, the
ledger they write (one line an attempt event: "<event> <job id> <attempt> <pid>", see
tests/apps/worker_app.py), and the patience real processes need.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests._waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {"poll_interval": 0.05, "heartbeat_interval": 0.2, "stale_after": 1.0, "reaper_interval": 0.2,
            "shutdown_grace": 5.0}


class Workers:
    """Starts `aiojobs work` processes on the test database and cleans them up."""

    def __init__(self, url: str, ledger: Path, logs: Path) -> None:
        self.url = url
        self.ledger = ledger
        self.logs = logs
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, *more: str, command: str = "work", **settings: object) -> subprocess.Popen[bytes]:
        env = {**os.environ, "AIOJOBS_TEST_LEDGER": str(self.ledger),
               "AIOJOBS_TEST_SETTINGS": json.dumps({**SETTINGS, **settings})}
        log = open(self.logs / f"worker-{len(self.processes)}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [sys.executable, "-m", "aiojobs_engine", command, "--app", "tests.apps.worker_app:engine",
             "--url", self.url, *more],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        self.processes.append(process)
        return process

    def log(self, index: int) -> str:
        return (self.logs / f"worker-{index}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(10)


def ledger_lines(workers: Workers) -> list[list[str]]:
    return [line.split() for line in workers.ledger.read_text().splitlines() if line]


async def until(predicate: Callable[[], object | Awaitable[object]], timeout: float = 20.0,
                what: str = "condition") -> object:
    """``eventually``, with the patience real processes need."""
    return await eventually(predicate, timeout=timeout, interval=0.05, message=what)
