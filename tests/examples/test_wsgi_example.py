"""examples/wsgi_app.py: a sync web app enqueueing from 16 request threads at once, on both
backends, with the engine in the same process and with the jobs run elsewhere."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from aiojobs_engine import Engine, JobState
from tests._waiting import eventually
from tests.conftest import FAST
from tests.examples.test_examples import _free_port

ROOT = Path(__file__).resolve().parents[2]
THREADS, PER_THREAD = 16, 5


def post(base: str, order_id: int) -> int:
    request = urllib.request.Request(f"{base}/orders/{order_id}", method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 202
        return int(json.loads(response.read())["job_id"])


def serve(tmp_path: Path, url: str, *options: str) -> tuple[subprocess.Popen[str], str]:
    port = _free_port()
    env = {**os.environ, "AIOJOBS_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, str(ROOT / "examples" / "wsgi_app.py"), "--port", str(port), *options],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert server.stdout is not None
    first_line = server.stdout.readline()  # printed once the server listens
    assert first_line.startswith("serving on"), first_line + server.stdout.read()
    return server, f"http://127.0.0.1:{port}"


def stop(server: subprocess.Popen[str]) -> str:
    server.terminate()
    output, _ = server.communicate(timeout=30)
    assert server.returncode == 0, output
    assert "Traceback" not in output, output
    return output


def orders_from_threads(base: str) -> list[int]:
    with ThreadPoolExecutor(THREADS) as pool:
        batches = pool.map(lambda t: [post(base, t * 100 + i) for i in range(PER_THREAD)], range(THREADS))
        return [job_id for batch in batches for job_id in batch]


async def states(url: str) -> dict[JobState, int]:
    async with Engine(url, **FAST) as engine:
        counts: dict[JobState, int] = {}
        for job in await engine.list_jobs(limit=1000):
            counts[job.state] = counts.get(job.state, 0) + 1
        return counts


@pytest.mark.slow
def test_sync_views_enqueue_and_the_engine_in_the_same_process_runs_the_jobs(tmp_path: Path, db_url: str) -> None:
    server, base = serve(tmp_path, db_url)
    try:
        ids = orders_from_threads(base)
        assert len(set(ids)) == THREADS * PER_THREAD

        async def all_completed() -> bool:
            return await states(db_url) == {JobState.COMPLETED: THREADS * PER_THREAD}

        asyncio.run(eventually(all_completed, timeout=30, message="every order's job completed"))
    finally:
        output = stop(server)
    assert output.rstrip().endswith("stopped")


@pytest.mark.slow
def test_sync_views_enqueue_with_the_jobs_run_elsewhere(tmp_path: Path, db_url: str) -> None:
    server, base = serve(tmp_path, db_url, "--no-work")
    try:
        ids = orders_from_threads(base)
    finally:
        stop(server)
    assert len(set(ids)) == THREADS * PER_THREAD
    assert asyncio.run(states(db_url)) == {JobState.WAITING: THREADS * PER_THREAD}
