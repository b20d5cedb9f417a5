"""Real engine processes (`python -m aiojobs_engine work`/`workoff`), real signals, real crashes.

Each attempt writes a line to a ledger file, so the tests can check from outside that no job
was lost and none ran twice, whatever happened to the processes.
"""

from __future__ import annotations

import re
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from aiojobs_engine import Engine, JobState
from tests.apps import worker_app
from tests.e2e._workers import SETTINGS, Workers, ledger_lines, until

pytestmark = pytest.mark.slow

RECOVERY_BOUND = SETTINGS["stale_after"] + SETTINGS["heartbeat_interval"] + SETTINGS["reaper_interval"]


@pytest.fixture
def workers(db_url: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(db_url, tmp_path / "ledger.txt", tmp_path)
    (tmp_path / "ledger.txt").touch()
    yield pool
    pool.stop_all()


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[Engine]:
    """The test's own view of the database: the application's engine, opened, not working."""
    worker_app.engine.configure(url=db_url, **SETTINGS)
    async with worker_app.engine:
        yield worker_app.engine


def reaper_only(url: str) -> Engine:
    """An engine that claims nothing (it works an empty queue) but rescues and watches."""
    return Engine(url, queues=["nothing-here"], **SETTINGS)


def started_by(workers: Workers, job_id: int) -> int | None:
    for event, jid, _attempt, pid in ledger_lines(workers):
        if event == "start" and int(jid) == job_id:
            return int(pid)
    return None


async def test_several_processes_run_every_job_exactly_once(workers: Workers, client: Engine) -> None:
    for _ in range(3):
        workers.start()

    async def all_up() -> bool:
        return len(await client.list_engines()) == 3

    await until(all_up, what="3 engines registered")  # else the first one up may do it all
    records = await client.enqueue_many([worker_app.record.new(i) for i in range(600)])
    ids = {r.id for r in records if r}

    async def all_done() -> bool:
        counts = await client.count_jobs()
        return counts.get(("default", JobState.COMPLETED), 0) == 600

    await until(all_done, timeout=60, what="600 jobs completed")
    runs = Counter(int(jid) for event, jid, _a, _p in ledger_lines(workers) if event == "run")
    assert set(runs) == ids, "a job was lost"
    assert max(runs.values()) == 1, f"jobs run twice: {[j for j, n in runs.items() if n > 1]}"
    assert len({pid for _e, _j, _a, pid in ledger_lines(workers)}) > 1, "only one process did the work"


async def test_kill_9_mid_job_runs_the_job_again_elsewhere(workers: Workers, client: Engine) -> None:
    victim = workers.start()
    record = await worker_app.slow.enqueue(60, first_run_only=True)
    assert record
    await until(lambda: started_by(workers, record.id) == victim.pid, what="job started by the victim")
    victim.send_signal(signal.SIGKILL)
    victim.wait(5)
    killed_at = time.monotonic()
    workers.start()
    done = await client.wait_for(record.id, timeout=30)
    elapsed = time.monotonic() - killed_at
    assert done.state is JobState.COMPLETED and done.attempt == 2
    assert done.errors[0]["name"] == "EngineLost"
    assert done.result != victim.pid
    assert elapsed < RECOVERY_BOUND * 5 + 5  # generous: a process start is in there too


async def test_a_frozen_engine_that_wakes_up_has_its_late_outcome_refused(workers: Workers,
                                                                          client: Engine) -> None:
    frozen = workers.start()
    record = await worker_app.slow.enqueue(1.5, first_run_only=True)
    assert record
    await until(lambda: started_by(workers, record.id) == frozen.pid, what="job started")
    frozen.send_signal(signal.SIGSTOP)
    try:
        rescuer = workers.start()
        done = await client.wait_for(record.id, timeout=30)
        assert done.state is JobState.COMPLETED and done.result == rescuer.pid and done.attempt == 2
    finally:
        frozen.send_signal(signal.SIGCONT)
    # Waking up, the frozen engine learns it was declared dead; its run's outcome (completed,
    # or handed back if it stopped the void run first) is refused by fencing.
    refused = re.compile(rf"outcome of job {record.id} \((completed|handed_back)\) refused")
    await until(lambda: refused.search(workers.log(0)), timeout=20, what="the late outcome to be refused")
    final = await client.get_job(record.id)
    assert final and final.state is JobState.COMPLETED and final.result == rescuer.pid and final.attempt == 2


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_first_signal_lets_the_running_job_finish(workers: Workers, client: Engine, sig: int) -> None:
    worker = workers.start()
    record = await worker_app.slow.enqueue(1.0)
    assert record
    await until(lambda: started_by(workers, record.id) == worker.pid, what="job started")
    worker.send_signal(sig)
    assert worker.wait(15) == 0, workers.log(0)
    done = await client.get_job(record.id)
    assert done and done.state is JobState.COMPLETED and done.attempt == 1
    assert await client.list_engines() == []


async def test_second_signal_hands_the_running_job_back_at_once(workers: Workers, client: Engine) -> None:
    worker = workers.start()
    record = await worker_app.slow.enqueue(60)
    assert record
    await until(lambda: started_by(workers, record.id) == worker.pid, what="job started")
    worker.send_signal(signal.SIGTERM)
    await until(lambda: "stopping gracefully" in workers.log(0), what="the first signal handled")
    t0 = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    code = worker.wait(15)
    assert time.monotonic() - t0 < 5
    assert code == 0, workers.log(0)
    back = await client.get_job(record.id)
    assert back and back.state is JobState.WAITING and back.attempt == 0 and back.errors == []
    assert back.claimed_by is not None  # it was claimed, then handed back


async def test_grace_period_expiry_hands_back_then_another_engine_finishes(workers: Workers,
                                                                           client: Engine) -> None:
    worker = workers.start(shutdown_grace=0.5)
    record = await worker_app.slow.enqueue(60, first_run_only=True)
    assert record
    await until(lambda: started_by(workers, record.id) == worker.pid, what="job started")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    back = await client.get_job(record.id)
    assert back and back.state is JobState.WAITING and back.attempt == 0
    workers.start()
    done = await client.wait_for(record.id, timeout=20)
    assert done.state is JobState.COMPLETED and done.attempt == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_workoff_first_signal_stops_claiming_and_lets_the_running_job_finish(workers: Workers,
                                                                                  client: Engine,
                                                                                  sig: int) -> None:
    running = await worker_app.slow.enqueue(1.0)
    queued = await worker_app.record.enqueue(1)  # due too, but behind the slow one (concurrency 1)
    assert running and queued
    worker = workers.start("--queues", "default", "--concurrency", "1", command="workoff")
    await until(lambda: started_by(workers, running.id) == worker.pid, what="job started")
    worker.send_signal(sig)
    assert worker.wait(15) == 0, workers.log(0)
    assert "ran 1 attempt\n" in workers.log(0)
    done = await client.get_job(running.id)
    assert done and done.state is JobState.COMPLETED and done.attempt == 1
    left = await client.get_job(queued.id)
    assert left and left.state is JobState.WAITING and left.attempt == 0  # not claimed after the signal
    assert await client.list_engines() == []


@pytest.mark.parametrize("how", ["second signal", "grace expired"])
async def test_workoff_hands_the_running_job_back_when_stopped_at_once(workers: Workers, client: Engine,
                                                                       how: str) -> None:
    record = await worker_app.slow.enqueue(60)
    assert record
    worker = workers.start(command="workoff", shutdown_grace=5.0 if how == "second signal" else 0.5)
    await until(lambda: started_by(workers, record.id) == worker.pid, what="job started")
    worker.send_signal(signal.SIGTERM)
    asked = time.monotonic()
    if how == "second signal":
        await until(lambda: "stopping gracefully" in workers.log(0), what="the first signal handled")
        worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0, workers.log(0)
    assert time.monotonic() - asked < 4  # within neither the 5 s grace nor the 60 s job
    assert "ran 1 attempt\n" in workers.log(0)
    back = await client.get_job(record.id)
    assert back and back.state is JobState.WAITING and back.attempt == 0 and back.errors == []
    assert back.claimed_by is not None  # it was claimed, then handed back
    assert (await client.count_jobs(due_only=True)).get(("default", JobState.WAITING)) == 1  # due at once
    assert await client.list_engines() == []


async def test_a_job_blocking_the_loop_does_not_get_its_engine_reaped(workers: Workers, client: Engine) -> None:
    """The heartbeat runs in a thread: a loop blocked for 3 x stale_after is not a dead engine."""
    worker = workers.start()
    record = await worker_app.blocks_loop.enqueue(3.0)
    assert record
    async with reaper_only(workers.url).running():  # a live reaper watching the worker
        done = await client.wait_for(record.id, timeout=30)
    assert done.state is JobState.COMPLETED and done.attempt == 1 and done.result == worker.pid
    assert [line[0] for line in ledger_lines(workers)] == ["start", "end"]
    assert "event loop has been blocked" in workers.log(0) and "blocks_loop" in workers.log(0)


async def test_a_loop_blocked_past_the_limit_stops_heartbeats_and_the_job_is_rescued(workers: Workers,
                                                                                     client: Engine) -> None:
    wedged = workers.start(blocked_loop_limit=0.5)
    record = await worker_app.blocks_loop.enqueue(30.0)
    assert record
    await until(lambda: started_by(workers, record.id) == wedged.pid, what="job started")
    workers.start()
    async with reaper_only(workers.url).running():
        done = await client.wait_for(record.id, timeout=30)
    assert done.state is JobState.COMPLETED and done.attempt == 2 and done.result != wedged.pid
    assert done.errors[0]["name"] == "EngineLost"
    await until(lambda: "stops heartbeating" in workers.log(0), timeout=10, what="the suspension to be logged")


@pytest.mark.postgres
@pytest.mark.timeout(240)
async def test_four_engine_processes_on_postgres_run_10000_jobs_exactly_once(postgres_url: str,
                                                                            tmp_path: Path) -> None:
    workers = Workers(postgres_url, tmp_path / "ledger.txt", tmp_path)
    workers.ledger.touch()
    worker_app.engine.configure(url=postgres_url, **SETTINGS)
    try:
        for _ in range(4):
            workers.start()
        async with worker_app.engine as client:
            records = await client.enqueue_many([worker_app.record.new(i) for i in range(10_000)])
            ids = {r.id for r in records if r}

            async def all_done() -> bool:
                counts = await client.count_jobs()
                return counts.get(("default", JobState.COMPLETED), 0) == 10_000

            await until(all_done, timeout=200, what="10,000 jobs completed")
        runs = Counter(int(jid) for event, jid, _a, _p in ledger_lines(workers) if event == "run")
        assert set(runs) == ids, f"{len(ids - set(runs))} jobs lost"
        assert max(runs.values()) == 1, f"jobs run twice: {[j for j, n in runs.items() if n > 1][:10]}"
        per_process = Counter(pid for _e, _j, _a, pid in ledger_lines(workers))
        assert len(per_process) == 4, per_process
    finally:
        workers.stop_all()


async def test_three_processes_never_pass_a_queue_rate_limit(workers: Workers, client: Engine) -> None:
    """From outside: three engine processes on a queue limited to 5 starts in any 0.5 s; the
    start times read from the job records never hold more than 5 in one window."""
    await client.set_queue("default", rate_limit=(5, 0.5))
    for _ in range(3):
        workers.start()

    async def all_up() -> bool:
        return len(await client.list_engines()) == 3

    await until(all_up, what="3 engines registered")
    records = await client.enqueue_many([worker_app.record.new(i) for i in range(30)])

    async def all_done() -> bool:
        counts = await client.count_jobs()
        return counts.get(("default", JobState.COMPLETED), 0) == 30

    await until(all_done, timeout=30, what="30 jobs completed")
    jobs = [await client.get_job(r.id) for r in records if r]
    starts = sorted(j.attempted_at for j in jobs if j and j.attempted_at)
    assert len(starts) == 30 and {j.attempt for j in jobs if j} == {1}
    assert max(sum(1 for s in starts if t - timedelta(seconds=0.5) < s <= t) for t in starts) <= 5
    assert (starts[-1] - starts[0]).total_seconds() >= 2.5  # 30 starts, 5 a window: 6 windows
    assert len({pid for _e, _j, _a, pid in ledger_lines(workers)}) > 1, "only one process did the work"
