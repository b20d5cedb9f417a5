"""Queue and per-key limits seen from outside: four real engine processes on one database.

Issue 21's acceptance check: "From outside, on both backends, with four engine processes: a
queue limited to 20 starts per second for 5 s, per-key concurrency 1 over three keys, and a
per-key window, with start times read from the job records." Each test reads the job records
(``attempted_at``, ``attempt``) and the ledger the processes write (one line per start and
end of an attempt, appended in the order they happen, so it orders events across processes
without trusting anyone's clock).

The four processes are started once per backend and shared by the tests of this module: four
interpreters take several seconds to come up on a 2-core machine, more than most of these
tests take. Each test works its own queue, stored with its limits before its jobs are
enqueued (an engine reads the settings of a queue new to it before it claims from it), so
the tests do not see each other's jobs.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import datetime
from itertools import pairwise

import pytest

from aiojobs_engine import Engine, JobRecord, JobState
from aiojobs_engine.pytest_plugin import postgres_test_schema, sqlite_test_url
from tests._waiting import still_running
from tests.apps import worker_app
from tests.e2e._workers import SETTINGS, Workers, ledger_lines, until
from tests.engine.test_rate_limits import most_in_any_window

pytestmark = pytest.mark.slow

PROCESSES = 4


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One database for the whole module on each backend: a SQLite file, or a schema of the
    session's PostgreSQL database."""
    if request.param == "sqlite":
        yield sqlite_test_url(tmp_path_factory.mktemp("limits-sqlite"))
        return
    database = request.getfixturevalue("postgres_database")
    if database is None:
        pytest.skip("no PostgreSQL server answers (set AIOJOBS_TEST_POSTGRES_URL)")
    with postgres_test_schema(database) as url:
        yield url


async def _migrate(url: str) -> None:
    async with Engine(url):
        pass


@pytest.fixture(scope="module")
def workers(shared_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    """Four `aiojobs work` processes (every queue) on the module's database."""
    folder = tmp_path_factory.mktemp("limits-workers")
    pool = Workers(shared_url, folder / "ledger.txt", folder)
    pool.ledger.touch()
    asyncio.run(_migrate(shared_url))  # once, before four processes open the database at once
    try:
        for _ in range(PROCESSES):
            pool.start()
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture
async def client(workers: Workers) -> AsyncIterator[Engine]:
    """The application's engine on the module's database, opened, not working; the four
    processes registered (so no one of them does everything before the others are up)."""
    worker_app.engine.configure(url=workers.url, **SETTINGS)
    async with worker_app.engine as engine:

        async def all_up() -> bool:
            for process in workers.processes:
                still_running(process)
            return len(await engine.list_engines()) == PROCESSES

        await until(all_up, timeout=30, what=f"{PROCESSES} engines registered")
        yield engine


async def completed(client: Engine, records: Sequence[JobRecord | None], queue: str,
                    timeout: float = 30) -> list[JobRecord]:
    """Wait for every job of ``records`` to complete; their records, each run once (attempt 1:
    no attempt is charged for the time a job waited for its limits)."""
    ids = [r.id for r in records if r is not None]
    assert len(ids) == len(records)

    async def all_done() -> bool:
        return (await client.count_jobs()).get((queue, JobState.COMPLETED), 0) == len(ids)

    await until(all_done, timeout=timeout, what=f"{len(ids)} jobs of {queue!r} completed")
    jobs = {job.id: job for job in await client.list_jobs(queue=queue, limit=len(ids))}
    assert set(jobs) == set(ids), "a job was lost"
    assert {(job.state, job.attempt) for job in jobs.values()} == {(JobState.COMPLETED, 1)}
    assert all(job.attempted_at is not None and job.completed_at is not None for job in jobs.values())
    return [jobs[i] for i in ids]


def ledger_of(workers: Workers, jobs: Sequence[JobRecord], *events: str) -> list[tuple[str, int, int]]:
    """The ledger's lines of these jobs, in the order they were written: (event, job id, pid)."""
    ids = {job.id for job in jobs}
    return [(event, int(job), int(pid)) for event, job, _attempt, pid in ledger_lines(workers)
            if event in events and int(job) in ids]


def each_ran_once(workers: Workers, jobs: Sequence[JobRecord], event: str) -> set[int]:
    """Check the ledger holds one ``event`` of each job (nothing lost, nothing run twice); the
    processes that ran them."""
    lines = ledger_of(workers, jobs, event)
    runs = Counter(job for _event, job, _pid in lines)
    assert set(runs) == {job.id for job in jobs}, "a job never ran"
    assert max(runs.values()) == 1, f"jobs run twice: {[j for j, n in runs.items() if n > 1]}"
    return {pid for _event, _job, pid in lines}


def most_at_once(workers: Workers, jobs: Sequence[JobRecord]) -> tuple[dict[str, int], int]:
    """From the ledger's starts and ends: the most jobs of each key running at once, and the
    most running at once in all."""
    key_of: Mapping[int, str | None] = {job.id: job.concurrency_key for job in jobs}
    running: Counter[str | None] = Counter()
    most: Counter[str | None] = Counter()
    together = 0
    for event, job, _pid in ledger_of(workers, jobs, "start", "end"):
        key = key_of[job]
        running[key] += 1 if event == "start" else -1
        most[key] = max(most[key], running[key])
        together = max(together, sum(running.values()))
    assert not +running, f"jobs that started and never ended: {+running}"
    return {str(key): n for key, n in most.items()}, together


def starts_by_key(jobs: Sequence[JobRecord]) -> dict[str, list[datetime]]:
    starts: dict[str, list[datetime]] = {}
    for job in jobs:
        assert job.concurrency_key is not None and job.attempted_at is not None
        starts.setdefault(job.concurrency_key, []).append(job.attempted_at)
    return starts


async def test_a_queue_rate_limit_of_20_a_second_holds_across_four_processes(workers: Workers,
                                                                              client: Engine) -> None:
    """100 jobs on a queue limited to 20 starts in any 1 s: five windows' worth of starts."""
    await client.set_queue("rated", rate_limit=(20, 1.0))
    records = await client.enqueue_many([worker_app.record.options(queue="rated").new(n) for n in range(100)])
    jobs = await completed(client, records, "rated")
    starts = [job.attempted_at for job in jobs if job.attempted_at]
    assert most_in_any_window(starts, 1.0) <= 20
    assert (max(starts) - min(starts)).total_seconds() >= 4.0  # 100 starts, 20 a window: 5 windows
    assert len(each_ran_once(workers, jobs, "run")) > 1, "only one process did the work"


async def test_one_job_per_key_at_a_time_over_three_keys(workers: Workers, client: Engine) -> None:
    """concurrency_per_key=1, three keys (derived from the job's arguments), 12 jobs each of
    50 ms of work: never two jobs of a key at once, the three keys side by side. Each process
    runs one job of the queue at a time, so three keys at once take three processes (else, on
    SQLite, the process that ends a job claims the next before the others poll, and may do it all)."""
    await client.set_queue("one-per-key", concurrency=1, concurrency_per_key=1)
    keys = ["tenant-a", "tenant-b", "tenant-c"]
    keyed = worker_app.keyed.options(queue="one-per-key")
    records = await client.enqueue_many([keyed.new(key, 0.05) for _ in range(12) for key in keys])
    jobs = await completed(client, records, "one-per-key")
    assert {job.concurrency_key for job in jobs} == set(keys)
    assert len(each_ran_once(workers, jobs, "start")) > 1, "only one process did the work"
    per_key, together = most_at_once(workers, jobs)
    assert per_key == dict.fromkeys(keys, 1)  # never two of one key at once (the ledger's order)
    assert together == 3, "the three keys never ran side by side"
    for key in keys:  # and the records agree: each job of a key began after the one before ended
        spans = sorted((job.attempted_at, job.completed_at) for job in jobs if job.concurrency_key == key)
        overlaps = [(a, b) for a, b in pairwise(spans) if b[0] < a[1]]
        assert not overlaps, f"{key}: {overlaps}"


async def test_each_key_has_its_own_rate_window(workers: Workers, client: Engine) -> None:
    """rate_limit_per_key=(3, 0.5) over three keys, 9 jobs each: no key starts more than 3
    in any 0.5 s, while the keys together do. One job of the queue at a time per process, so
    that no one process takes a whole window's starts in one claim."""
    await client.set_queue("key-windows", concurrency=1, rate_limit_per_key=(3, 0.5))
    keys = ["a", "b", "c"]
    records = await client.enqueue_many([worker_app.record.options(queue="key-windows", concurrency_key=key).new(n)
                                         for n in range(9) for key in keys])
    jobs = await completed(client, records, "key-windows")
    assert len(each_ran_once(workers, jobs, "run")) > 1, "only one process did the work"
    starts = starts_by_key(jobs)
    assert set(starts) == set(keys)
    for key, times in starts.items():
        assert most_in_any_window(times, 0.5) <= 3, key
        assert (max(times) - min(times)).total_seconds() >= 1.0, key  # 9 starts, 3 a window: 3 windows
    assert most_in_any_window([t for times in starts.values() for t in times], 0.5) > 3  # the windows are apart


async def test_a_global_cap_per_key_limits_and_priorities_together(workers: Workers, client: Engine) -> None:
    """global_concurrency=3 and concurrency_per_key=1 over five keys, each key with jobs of
    priorities 30, 20, 10 and 0 enqueued in that order (so ids run against priorities). One
    job of the queue at a time per process: the cap is reached across processes."""
    await client.set_queue("capped", concurrency=1, global_concurrency=3, concurrency_per_key=1)
    keys = [f"k{n}" for n in range(5)]
    priorities = [30, 20, 10, 0]
    records = await client.enqueue_many([worker_app.keyed.options(queue="capped", priority=p).new(key, 0.1)
                                         for p in priorities for key in keys])
    jobs = await completed(client, records, "capped")
    assert len(each_ran_once(workers, jobs, "start")) > 1, "only one process did the work"
    per_key, together = most_at_once(workers, jobs)
    assert per_key == dict.fromkeys(keys, 1)
    assert together == 3, "the cap was never reached"  # (and never passed)

    priority = {job.id: job.priority for job in jobs}
    lines = ledger_of(workers, jobs, "start", "end")
    order = [job for event, job, _pid in lines if event == "start"]
    for key in keys:  # a key's jobs start best first (each of them is the key's one at a time)
        assert [priority[j] for j in order if j in {job.id for job in jobs if job.concurrency_key == key}] == [
            0, 10, 20, 30], key
    # The claims made before any job ended took the best jobs there were (one per key).
    first_end = next(n for n, (event, _job, _pid) in enumerate(lines) if event == "end")
    assert {priority[job] for event, job, _pid in lines[:first_end] if event == "start"} == {0}
    # Each urgent job waited only for room: all had started before a job two priorities down
    # could (its key ran two jobs first). Robust to a start written ~0.1 s after its claim.
    last_urgent = max(n for n, job in enumerate(order) if priority[job] == 0)
    first_low = min(n for n, job in enumerate(order) if priority[job] >= 20)
    assert last_urgent < first_low, [priority[j] for j in order]


async def test_a_change_of_per_key_concurrency_is_followed_while_the_processes_run(workers: Workers,
                                                                                  client: Engine) -> None:
    """concurrency_per_key 1 -> 2 with three jobs of one key waiting: the second starts while
    the first still runs (1.5 s, against a 0.05 s poll interval); the third only after an end."""
    await client.set_queue("changing", concurrency_per_key=1)
    keyed = worker_app.keyed.options(queue="changing")
    records = await client.enqueue_many([keyed.new("shared", 1.5) for _ in range(3)])
    waiting = [r for r in records if r]

    def started() -> int:
        return len(ledger_of(workers, waiting, "start"))

    await until(lambda: started() == 1, what="the key's first job started")
    await client.set_queue("changing", concurrency_per_key=2)
    await until(lambda: started() == 2, what="the key's second job started after the change")
    jobs = await completed(client, records, "changing")
    lines = [event for event, _job, _pid in ledger_of(workers, jobs, "start", "end")]
    assert lines[:3] == ["start", "start", "end"]  # the second started while the first ran
    assert most_at_once(workers, jobs)[0] == {"shared": 2}  # and a third never joined them
