"""`python -m aiojobs_engine` as a real process: version, JSON output, and SIGTERM during `work`."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import aiojobs_engine
from aiojobs_engine import Engine, JobRecord, JobState
from tests._waiting import eventually, still_running

from ._helpers import APP

ROOT = Path(__file__).resolve().parents[2]


def aiojobs(*argv: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aiojobs_engine", *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, check=False)


def enqueue(url: str, name: str, *args: object) -> JobRecord:
    async def go() -> JobRecord:
        async with Engine(url) as engine:  # by name: this process need not declare the job
            record = await engine.enqueue(name, *args)
            assert record is not None
            return record

    return asyncio.run(go())


def get(url: str, job_id: int) -> JobRecord:
    async def go() -> JobRecord:
        async with Engine(url) as engine:
            record = await engine.get_job(job_id)
            assert record is not None
            return record

    return asyncio.run(go())


def test_version() -> None:
    result = aiojobs("--version")
    assert (result.returncode, result.stdout) == (0, f"aiojobs {aiojobs_engine.__version__}\n")


def test_jobs_list_json(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    first = enqueue(url, "add", 1, 2)
    second = enqueue(url, "slow", 0.5)
    result = aiojobs("jobs", "list", "--json", "--url", url)
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert [(j["id"], j["name"], j["args"], j["state"]) for j in listed] == [
        (second.id, "slow", [0.5], "waiting"), (first.id, "add", [1, 2], "waiting"),
    ]
    missing = aiojobs("jobs", "show", "999", "--url", url)
    assert (missing.returncode, missing.stderr) == (1, "aiojobs: error: no job with id 999\n")


@pytest.mark.slow
@pytest.mark.timeout(30)
def test_work_finishes_the_running_job_on_sigterm(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    job = enqueue(url, "slow", 1.0)
    worker = subprocess.Popen(
        [sys.executable, "-m", "aiojobs_engine", "work", "--app", APP, "--url", url],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        async def until_running() -> None:
            async with Engine(url) as engine:
                async def running() -> bool:
                    still_running(worker)
                    record = await engine.get_job(job.id)
                    return record is not None and record.state is JobState.RUNNING

                await eventually(running, timeout=15, interval=0.05, message="the worker started the job")

        asyncio.run(until_running())
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=15)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 0, err
    assert "SIGTERM" in err  # the engine logs the signal at the worker's default log level
    assert " working every queue; 5 jobs: add, boom, loop_kind, slow, stop_worker\n" in err  # the start line
    record = get(url, job.id)
    assert (record.state, record.attempt, record.result) == (JobState.COMPLETED, 1, 1.0)


def test_the_command_line_logs_each_line_with_its_job(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    job = enqueue(url, "boom")  # by name: the default max_attempts applies, so it is retried later
    result = aiojobs("workoff", "--app", APP, "--url", url, timeout=60)
    assert result.returncode == 0, result.stderr
    failed = [line for line in result.stderr.splitlines() if "[event=job.retrying" in line]
    assert len(failed) == 1, result.stderr
    assert " WARNING aiojobs_engine: job " in failed[0]
    assert failed[0].endswith(f"[event=job.retrying job_id={job.id} job=boom queue=default attempt=1]"), failed[0]
