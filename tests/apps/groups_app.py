"""An application that declares its worker groups in code (see tests/cli/test_groups.py)."""

from __future__ import annotations

from aiojobs_engine import Engine, WorkerGroup

engine = Engine(groups=[
    WorkerGroup("mail", queues=["email"], processes=2, concurrency=4, max_attempts=3),
    WorkerGroup("rest", processes=1, shutdown_grace=20),
])


@engine.job(queue="email")
async def send(to: str) -> str:
    return to
