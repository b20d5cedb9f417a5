"""The supervisor with real processes: `aiojobs work --processes N`, worker groups, detached mode.

Every attempt writes a ledger line ("<event> <job id> <attempt> <pid>", see
tests/apps/worker_app.py), so the tests check from outside that no job was lost and none
ran twice, whatever happened to the processes. Orphans are checked in the process table.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aiojobs_engine import Engine, JobState
from aiojobs_engine._cli._process import pid_alive, same_process, start_time
from tests._waiting import eventually
from tests.apps import worker_app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.apps.worker_app:engine"
# A long stale_after: a job of a killed worker could only come back this fast by the
# restarted worker taking back its own orphans (same worker id), never by a rescue.
SETTINGS = {"poll_interval": 0.05, "heartbeat_interval": 0.2, "stale_after": 30.0, "reaper_interval": 0.2,
            "shutdown_grace": 5.0}


class Box:
    """One supervisor (or detached-mode command) at a time, on the test's database and folder."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url = url
        self.folder = folder
        self.ledger = folder / "ledger.txt"
        self.ledger.touch()
        self.pidfile = folder / "aiojobs.pid"
        self.env = {**os.environ, "AIOJOBS_TEST_LEDGER": str(self.ledger), "PYTHONPATH": str(ROOT),
                    "AIOJOBS_TEST_SETTINGS": json.dumps(SETTINGS)}
        self.processes: list[subprocess.Popen[bytes]] = []
        self.seen: dict[int, int | None] = {}  # pid -> start time: never kill a stranger that reused a pid

    def argv(self, command: str, *more: str) -> list[str]:
        return [sys.executable, "-m", "aiojobs_engine", command, "--app", APP, "--url", self.url, *more]

    def supervise(self, *more: str) -> subprocess.Popen[bytes]:
        log = open(self.folder / "supervisor.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(self.argv("work", "--pidfile", str(self.pidfile), *more), cwd=self.folder,
                                   env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.processes.append(process)
        return process

    def command(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "aiojobs_engine", *argv, "--pidfile", str(self.pidfile)],
                              cwd=self.folder, env=self.env, capture_output=True, text=True, timeout=timeout,
                              check=False)

    def log(self, name: str = "supervisor.log") -> str:
        return (self.folder / name).read_text(errors="replace")

    def state(self) -> dict[str, Any]:
        try:
            return json.loads((self.folder / "aiojobs.pid.json").read_text())
        except (OSError, ValueError):
            return {}

    def workers(self) -> list[dict[str, Any]]:
        workers = self.state().get("workers", [])
        for worker in workers:
            if worker.get("pid") and worker["pid"] not in self.seen:
                self.seen[worker["pid"]] = start_time(worker["pid"])
        return workers

    def running_pids(self) -> list[int]:
        return [w["pid"] for w in self.workers() if w.get("running")]

    def ledger_lines(self) -> list[list[str]]:
        return [line.split() for line in self.ledger.read_text().splitlines() if line]

    def started_by(self, job_id: int) -> int | None:
        for event, jid, _attempt, pid in self.ledger_lines():
            if event == "start" and int(jid) == job_id:
                return int(pid)
        return None

    def cleanup(self) -> None:
        """Whatever a failed test left: kill it, and check that nothing is left running."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        self.workers()
        state = self.state()
        if state.get("pid"):
            self.seen[state["pid"]] = state.get("start_time")
        for pid, started in self.seen.items():
            if same_process(pid, started):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def box(db_url: str, tmp_path: Path) -> Iterator[Box]:
    b = Box(db_url, tmp_path)
    yield b
    b.cleanup()


@pytest.fixture
def sqlite_box(sqlite_url: str, tmp_path: Path) -> Iterator[Box]:
    b = Box(sqlite_url, tmp_path)
    yield b
    b.cleanup()


async def client_for(url: str) -> AsyncIterator[Engine]:
    worker_app.engine.configure(url=url, **SETTINGS)
    async with worker_app.engine:
        yield worker_app.engine


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[Engine]:
    async for engine in client_for(db_url):
        yield engine


@pytest.fixture
async def sqlite_client(sqlite_url: str) -> AsyncIterator[Engine]:
    async for engine in client_for(sqlite_url):
        yield engine


async def until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> None:
    """``eventually``, with the patience real processes need."""
    await eventually(predicate, timeout=timeout, interval=0.05, message=what)


def no_orphans(pids: set[int]) -> bool:
    return not [pid for pid in pids if pid_alive(pid)]


async def test_a_worker_killed_with_sigkill_is_replaced_and_takes_its_job_back(box: Box, client: Engine) -> None:
    supervisor = box.supervise("--processes", "2")
    await until(lambda: len(box.running_pids()) == 2, what="two workers running")
    records = await client.enqueue_many([worker_app.record.new(i) for i in range(200)])
    slow = await worker_app.slow.enqueue(60, first_run_only=True)
    assert slow is not None
    await until(lambda: box.started_by(slow.id), what="the slow job started")
    victim = box.started_by(slow.id)
    assert victim in box.running_pids()
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    done = await client.wait_for(slow.id, timeout=20)
    # Back within seconds although stale_after is 30 s: the replacement runs under the same
    # worker id and took back its predecessor's orphans at once.
    assert time.monotonic() - killed_at < 10
    assert done.state is JobState.COMPLETED and done.attempt == 2 and done.result != victim
    assert done.errors and done.errors[0]["name"] == "EngineLost"
    assert done.claimed_by == next(w["id"] for w in box.workers() if w["pid"] == done.result)

    async def all_done() -> bool:
        return (await client.count_jobs()).get(("default", JobState.COMPLETED), 0) == 201

    await until(all_done, what="every job completed")
    runs = Counter(int(jid) for event, jid, _a, _p in box.ledger_lines() if event == "run")
    assert set(runs) == {r.id for r in records if r}, "a job was lost"
    replaced = [w for w in box.workers() if w["restarts"] == 1]
    assert len(replaced) == 1 and replaced[0]["running"] and replaced[0]["pid"] != victim
    assert "exited unexpectedly (killed by SIGKILL); restarting it" in box.log()
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(20) == 0, box.log()


async def test_sigterm_to_the_supervisor_lets_every_worker_finish_its_jobs(box: Box, client: Engine) -> None:
    supervisor = box.supervise("--processes", "2")
    await until(lambda: len(box.running_pids()) == 2, what="two workers running")
    workers = set(box.running_pids())
    jobs = [await worker_app.slow.enqueue(1.0) for _ in range(4)]
    await until(lambda: all(box.started_by(j.id) for j in jobs if j), what="the jobs started")
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(20) == 0, box.log()
    for job in jobs:
        assert job is not None
        record = await client.get_job(job.id)
        assert record and record.state is JobState.COMPLETED and record.attempt == 1
    assert no_orphans(workers)
    assert await client.list_engines() == []
    assert not box.pidfile.exists() and not (box.folder / "aiojobs.pid.json").exists()


async def test_sigkill_to_the_supervisor_workers_stop_gracefully_by_themselves(box: Box, client: Engine) -> None:
    supervisor = box.supervise("--processes", "2")
    await until(lambda: len(box.running_pids()) == 2, what="two workers running")
    workers = set(box.running_pids())
    job = await worker_app.slow.enqueue(1.5)
    assert job is not None
    await until(lambda: box.started_by(job.id), what="the job started")
    supervisor.send_signal(signal.SIGKILL)
    supervisor.wait(5)
    await until(lambda: no_orphans(workers), timeout=15, what="the workers to exit by themselves")
    record = await client.get_job(job.id)  # a graceful stop: the running job was finished, not abandoned
    assert record and record.state is JobState.COMPLETED and record.attempt == 1
    assert await client.list_engines() == []
    assert box.log().count("the supervisor (pid") == 2, box.log()
    stale = box.command("status", "--json")
    assert stale.returncode == 1
    reason = f"pid {supervisor.pid} is not running"
    assert json.loads(stale.stdout)["stale"] == {"pid": supervisor.pid, "reason": reason}


@pytest.mark.parametrize("how", ["two signals 0.1 s apart", "stop --timeout 0.1"])
async def test_a_second_stop_soon_after_the_first_hands_the_running_job_back(box: Box, client: Engine,
                                                                             how: str) -> None:
    """A worker takes a second signal within 0.5 s of its first for the same request: the
    supervisor holds the second back until it counts. With a grace longer than the 15 s
    before SIGKILL, a lost second signal would leave the job stuck in `running`."""
    (box.folder / "g.toml").write_text("[groups.g]\nprocesses = 1\nshutdown_grace = 25\n")
    supervisor = box.supervise("--config", "g.toml")
    await until(lambda: len(box.running_pids()) == 1, what="the worker running")
    workers = set(box.running_pids())
    job = await worker_app.slow.enqueue(60)
    assert job is not None
    await until(lambda: box.started_by(job.id), what="the job started")
    asked = time.monotonic()
    if how.startswith("two signals"):
        supervisor.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.1)  # the case under test: a second signal 0.1 s after the first
        supervisor.send_signal(signal.SIGTERM)
    else:
        stopped = await asyncio.to_thread(box.command, "stop", "--timeout", "0.1")
        assert stopped.returncode == 0 and "stopped at once" in stopped.stdout, stopped.stdout + stopped.stderr
    assert supervisor.wait(10) == 0, box.log()
    assert time.monotonic() - asked < 10, box.log()
    assert "killing it" not in box.log()
    record = await client.get_job(job.id)
    assert record and record.state is JobState.WAITING and record.attempt == 0 and record.errors == []
    assert no_orphans(workers)
    assert await client.list_engines() == []


async def test_a_worker_that_keeps_failing_is_given_up_after_backoff(sqlite_box: Box) -> None:
    box = sqlite_box
    box.url = "postgresql://postgres@127.0.0.1:1/nothing"  # nothing listens there: every start fails
    supervisor = box.supervise("--processes", "1", "--max-restarts", "2")
    assert supervisor.wait(20) == 1
    log = box.log()
    assert "restarting it in 0.5s" in log and "restarting it in 1s" in log
    assert "giving up on worker" in log and "3 failures in a row" in log


def test_start_reports_a_supervisor_that_could_not_start_its_workers(sqlite_box: Box) -> None:
    box = sqlite_box
    url = "postgresql://postgres@127.0.0.1:1/nothing"  # nothing listens there: every start fails
    result = box.command("start", "--app", APP, "--url", url, "--processes", "1", "--max-restarts", "0")
    assert result.returncode == 1
    assert result.stderr.startswith("aiojobs: error: the supervisor exited while starting (exit code 1); the end of")
    assert "giving up on worker" in result.stderr and "PostgreSQL is unavailable" in result.stderr
    assert not box.pidfile.exists()


async def test_detached_start_status_restart_stop_with_jobs_flowing(box: Box, client: Engine) -> None:
    (box.folder / "aiojobs.toml").write_text(
        '[groups.mail]\nqueues = ["email"]\nprocesses = 1\nconcurrency = 3\n\n'
        '[groups.rest]\nqueues = ["default"]\nprocesses = 1\nmax_attempts = 7\n'
    )
    started = box.command("start", "--app", APP, "--url", box.url, "--config", "aiojobs.toml", "--json")
    assert started.returncode == 0, started.stderr + box.log("aiojobs.log")
    supervisor = json.loads(started.stdout)["pid"]
    assert json.loads(started.stdout)["running"] == 2
    status = box.command("status", "--json")
    assert status.returncode == 0
    shown = json.loads(status.stdout)
    assert shown["pid"] == supervisor and [(w["group"], w["running"]) for w in shown["workers"]] == [
        ("mail", True), ("rest", True)]
    assert [w["id"].split(":", 1)[1] for w in shown["workers"]] == ["mail:0", "rest:0"]
    first = {w["pid"] for w in shown["workers"]}

    ids: list[int] = []
    flowing = True

    async def enqueue_all_along() -> None:
        n = 0
        while flowing:
            queue = "email" if n % 2 else "default"
            records = await client.enqueue_many([worker_app.record.options(queue=queue).new(n + i) for i in range(5)])
            ids.extend(r.id for r in records if r)
            n += 5
            await asyncio.sleep(0.02)  # the workload: 5 jobs every 20 ms

    def run_by(pids: set[int]) -> set[int]:
        return {int(pid) for event, _j, _a, pid in box.ledger_lines() if event == "run"} & pids

    feeder = asyncio.create_task(enqueue_all_along())
    await until(lambda: run_by(first) == first, what="jobs flowing through both workers")
    restarted = await asyncio.to_thread(box.command, "restart", "--json")
    assert restarted.returncode == 0, restarted.stderr + box.log("aiojobs.log")
    second = {w["pid"] for w in json.loads(restarted.stdout)["workers"]}
    assert not first & second and len(second) == 2
    await until(lambda: run_by(second) == second, what="jobs flowing through both new workers")
    flowing = False
    await feeder

    async def all_done() -> bool:
        counts = await client.count_jobs()
        return sum(n for (_q, state), n in counts.items() if state is JobState.COMPLETED) == len(ids)

    await until(all_done, what="every job completed")
    stopped = await asyncio.to_thread(box.command, "stop")
    assert stopped.returncode == 0 and "stopped gracefully" in stopped.stdout, stopped.stderr
    assert no_orphans({supervisor, *first, *second}) and not box.pidfile.exists()
    runs = Counter(int(jid) for event, jid, _a, _p in box.ledger_lines() if event == "run")
    assert set(runs) == set(ids), f"{len(set(ids) - set(runs))} jobs lost"
    assert max(runs.values()) == 1, f"jobs run twice: {[j for j, n in runs.items() if n > 1][:10]}"
    assert len({int(pid) for *_x, pid in box.ledger_lines()} & second) == 2, "the new workers did not take over"
    rest = await client.list_jobs(queue="default", limit=1)
    assert rest[0].max_attempts == 5  # enqueued here, where the config file's groups are not declared
    after = box.command("status")
    assert (after.returncode, after.stdout.strip()) == (1, f"aiojobs is not running (no pid file at {box.pidfile})")


def test_a_restart_whose_new_worker_cannot_start_stops_and_keeps_the_old_ones(sqlite_box: Box) -> None:
    box = sqlite_box
    (box.folder / "versioned_app.py").write_text(
        "from pathlib import Path\n"
        "if Path('broken').exists():\n"
        "    raise RuntimeError('the new code is broken')\n"
        "from tests.apps.worker_app import engine  # noqa: E402\n"
    )
    started = box.command("start", "--app", "versioned_app:engine", "--url", box.url, "--processes", "2", "--json")
    assert started.returncode == 0, started.stderr + box.log("aiojobs.log")
    old = {w["pid"] for w in box.workers()}
    (box.folder / "broken").touch()
    restarted = box.command("restart")
    assert restarted.returncode == 1
    assert "restart stopped: the new worker" in restarted.stderr and ":default:0 did not start" in restarted.stderr
    workers = box.workers()
    assert workers[1]["running"] and workers[1]["pid"] in old  # the second one still runs the old code
    # an import error exits with 2 (bad usage): no point restarting it until the code changes
    assert not workers[0]["running"] and workers[0]["state"] == "gave-up"
    assert "RuntimeError: the new code is broken" in box.log("aiojobs.log")
    (box.folder / "broken").unlink()
    fixed = box.command("restart", "--json")  # the next restart brings it back, and replaces the other
    assert fixed.returncode == 0, fixed.stderr
    assert [w["running"] for w in json.loads(fixed.stdout)["workers"]] == [True, True]
    assert not {w["pid"] for w in box.workers()} & old
    assert box.command("stop").returncode == 0
    assert no_orphans(set(box.seen))


async def test_the_supervisor_tells_systemd_when_its_workers_run_and_when_it_stops(sqlite_box: Box) -> None:
    box = sqlite_box
    with tempfile.TemporaryDirectory(dir="/tmp") as folder, \
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(f"{folder}/notify")
        notify.settimeout(20)
        box.env["NOTIFY_SOCKET"] = f"{folder}/notify"
        supervisor = box.supervise("--processes", "2")
        assert await asyncio.to_thread(notify.recv, 100) == b"READY=1"  # once, from the supervisor only
        assert len(box.running_pids()) == 2
        supervisor.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(notify.recv, 100) == b"STOPPING=1"
        assert supervisor.wait(20) == 0
        notify.setblocking(False)
        with pytest.raises(BlockingIOError):  # the workers, whose env has no NOTIFY_SOCKET, sent nothing
            notify.recv(100)
