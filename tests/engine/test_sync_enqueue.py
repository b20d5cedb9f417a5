"""Sync enqueue (``enqueue_sync``, ``enqueue_many_sync``): from plain threads, on both backends.

Threads with no event loop are what Django, Flask and thread pools give; these tests call
from them directly. A deadlock would show as a thread that never returns, so every wait
has a deadline and fails with what was still pending.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from aiojobs_engine import (
    ArgumentsError,
    BackendUnavailableError,
    ConfigurationError,
    Engine,
    EngineStateError,
    Job,
    JobRecord,
    JobState,
    SerializationError,
)
from tests._waiting import eventually
from tests.conftest import FAST

T = TypeVar("T")
THREADS = 16
DEADLINE = 60.0  # seconds for every thread to return; far beyond what the work takes


def on_threads(count: int, call: Callable[[int], T]) -> list[T]:
    """``call(i)`` on ``count`` threads released at the same moment; their results in order."""
    start = threading.Barrier(count)

    def together(index: int) -> T:
        start.wait(DEADLINE)
        return call(index)

    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(together, i) for i in range(count)]
        return [future.result(timeout=DEADLINE) for future in futures]


def on_engine(engine: Engine, check: Callable[[Engine], Any]) -> Any:
    """Open the engine on a loop of this thread, run ``check(engine)``, close it."""
    async def run() -> Any:
        async with engine:
            return await check(engine)

    return asyncio.run(run())


class EngineThread:
    """An engine running on an event loop of its own thread, as in a service beside sync code."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="engine-under-test")

    def __enter__(self) -> EngineThread:
        self._thread.start()
        assert self._ready.wait(DEADLINE), "the engine did not start"
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(DEADLINE)
        assert not self._thread.is_alive(), "the engine did not stop"

    def call(self, coroutine: Any) -> Any:
        """Run a coroutine on the engine's loop and wait for its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(DEADLINE)

    def _serve(self) -> None:
        async def work() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            async with self.engine.running():
                self._ready.set()
                await self._stop.wait()

        try:
            asyncio.run(work())
        except BaseException as exc:
            self._error = exc
            self._ready.set()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = Engine(db_url, **FAST)
    yield engine
    engine.close_sync()


def declare(engine: Engine) -> Any:
    @engine.job(queue="mail", max_attempts=4, meta={"team": "ops"})
    async def send(user_id: int, *, lang: str = "en") -> int:
        return user_id

    return send


def test_sixteen_threads_enqueue_at_once_with_no_engine_open(engine: Engine) -> None:
    send = declare(engine)
    per_thread = 20
    records = on_threads(THREADS, lambda t: [send.enqueue_sync(t * 1000 + i) for i in range(per_thread)])
    stored = [record for batch in records for record in batch]
    assert all(isinstance(record, JobRecord) for record in stored)
    assert len({record.id for record in stored}) == THREADS * per_thread

    async def check(engine: Engine) -> None:
        jobs = await engine.list_jobs(limit=1000)
        assert len(jobs) == THREADS * per_thread and {job.state for job in jobs} == {JobState.WAITING}
        assert sorted(job.args[0] for job in jobs) == sorted(t * 1000 + i for t in range(THREADS)
                                                             for i in range(per_thread))
        assert await engine.get_job(stored[0].id) == stored[0]  # the record a sync caller gets is the stored one

    on_engine(engine, check)


def test_a_sync_record_is_the_record_an_async_enqueue_makes(engine: Engine) -> None:
    send = declare(engine)
    synced = send.enqueue_sync(7, lang="fr")

    async def enqueue_async(engine: Engine) -> JobRecord | None:
        return await send.enqueue(7, lang="fr")

    awaited = on_engine(engine, enqueue_async)
    assert synced is not None and awaited is not None
    differs = {"id", "inserted_at", "available_at"}
    for field in JobRecord.__dataclass_fields__:
        if field not in differs:
            assert getattr(synced, field) == getattr(awaited, field), field
    assert (synced.queue, synced.max_attempts, synced.meta, synced.kwargs) == ("mail", 4, {"team": "ops"},
                                                                                {"lang": "fr"})


def test_every_sync_entry_point(engine: Engine) -> None:
    send = declare(engine)

    @engine.job(queue="users")
    class ProcessUser(Job):
        def __init__(self, tenant: str = "default") -> None:
            self.tenant = tenant

        async def run(self, user_id: int) -> str:
            return f"{self.tenant}:{user_id}"

    by_name = engine.enqueue_sync("send", 1)
    named = engine.options(priority=5).enqueue_sync("send", 2)
    optioned = send.options(queue="urgent").enqueue_sync(3)
    many = engine.enqueue_many_sync([send.new(4), engine.new("send", 5), ProcessUser.new(6)])
    classed = ProcessUser.enqueue_sync(7)
    class_optioned = ProcessUser.options(constructor_args=["acme"]).enqueue_sync(8)
    records = [by_name, named, optioned, *many, classed, class_optioned]
    assert all(record is not None for record in records)
    assert [r.args[0] for r in records if r is not None] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert named is not None and named.priority == 5 and named.queue == "mail"  # declared options kept
    assert optioned is not None and optioned.queue == "urgent"
    assert class_optioned is not None and class_optioned.constructor_args == ["acme"]
    assert [r.queue for r in many if r is not None] == ["mail", "mail", "users"]


def test_sync_enqueue_validates_as_the_async_one_and_stores_nothing_it_refuses(engine: Engine) -> None:
    send = declare(engine)
    with pytest.raises(ArgumentsError):
        send.enqueue_sync("one", "two", "three")
    with pytest.raises(SerializationError):
        send.enqueue_sync(object())
    with pytest.raises(ConfigurationError, match="list of requests"):
        engine.enqueue_many_sync(send.new(1))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="connection="):
        send.options(connection=object()).enqueue_sync(1)

    async def count(engine: Engine) -> int:
        return len(await engine.list_jobs())

    assert on_engine(engine, count) == 0


async def test_a_thread_that_runs_an_event_loop_is_told_to_await(engine: Engine) -> None:
    send = declare(engine)
    with pytest.raises(EngineStateError, match="await"):
        send.enqueue_sync(1)


def test_an_engine_running_in_another_thread_runs_what_sync_callers_enqueue(engine: Engine) -> None:
    ran: list[int] = []
    all_ran = threading.Event()
    total = THREADS * 5

    @engine.job()
    async def note(value: int) -> None:
        ran.append(value)
        if len(ran) == total:
            all_ran.set()

    with EngineThread(engine):
        records = on_threads(THREADS, lambda t: [note.enqueue_sync(t * 10 + i) for i in range(5)])
        assert all_ran.wait(DEADLINE), f"{len(ran)} of {total} jobs ran"
    assert sorted(ran) == sorted(r.args[0] for batch in records for r in batch if r is not None)


def test_an_engine_open_on_another_loop_is_refused_rather_than_hanging(engine: Engine) -> None:
    send = declare(engine)

    async def enqueue_here() -> None:
        await send.enqueue(1)

    with EngineThread(engine):
        with pytest.raises(EngineStateError, match="another event loop"):
            asyncio.run(enqueue_here())
        with pytest.raises(EngineStateError, match="another event loop"):
            asyncio.run(engine.open())


def test_close_sync_closes_and_the_next_call_opens_again(engine: Engine) -> None:
    send = declare(engine)
    first = send.enqueue_sync(1)
    engine.close_sync()
    engine.close_sync()  # twice is fine
    second = send.enqueue_sync(2)
    assert first is not None and second is not None and second.id > first.id


def test_configure_points_sync_callers_at_the_new_database(engine: Engine, tmp_path: Path) -> None:
    send = declare(engine)
    first = send.enqueue_sync(1)
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    engine.configure(url=elsewhere)
    second = send.enqueue_sync(2)
    assert first is not None and second is not None

    async def ids(engine: Engine) -> list[int]:
        return [job.args[0] for job in await engine.list_jobs()]

    assert on_engine(engine, ids) == [2]


def test_an_in_memory_database_is_refused_with_why() -> None:
    engine = Engine("sqlite:///:memory:")
    send = declare(engine)
    with pytest.raises(ConfigurationError, match="in-memory SQLite database exists only inside one connection"):
        send.enqueue_sync(1)


def test_close_sync_while_threads_enqueue_ends_every_call(engine: Engine) -> None:
    send = declare(engine)
    send.enqueue_sync(0)
    stored: list[int] = []
    refused: list[str] = []
    closing = threading.Event()

    def enqueue_until_closed(thread: int) -> None:
        for i in range(10_000):
            try:
                record = send.enqueue_sync(thread * 100_000 + i)
            except EngineStateError as exc:
                refused.append(str(exc))
            else:
                assert record is not None
                stored.append(record.id)
            if closing.is_set() and i % 10 == 9:
                return

    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(enqueue_until_closed, t) for t in range(THREADS)]
        def under_way() -> bool:  # every thread under way, most of them mid-call
            assert not any(f.done() for f in futures), [f.exception() for f in futures if f.done()]
            return len(stored) >= 50

        asyncio.run(eventually(under_way, timeout=DEADLINE, interval=0.001, message="50 jobs stored"))
        engine.close_sync()  # calls in flight finish or are refused; later calls open it again
        closing.set()
        for future in futures:
            future.result(timeout=DEADLINE)  # none hangs
    assert all("may or may not have been stored" in message for message in refused)

    async def ids(engine: Engine) -> set[int]:
        return {job.id for job in await engine.list_jobs(limit=10_000)}

    assert set(stored) <= on_engine(engine, ids)


def test_limits_are_checked_before_any_connection(tmp_path: Path) -> None:
    engine = Engine("postgresql://nobody@127.0.0.1:1/nothing", max_arguments_bytes=100)
    send = declare(engine)
    with pytest.raises(SerializationError, match="over the limit"):
        send.enqueue_sync(1, lang="x" * 200)
    with pytest.raises(BackendUnavailableError):  # and then the database's own error, clearly
        send.enqueue_sync(1)
    engine.close_sync()


def test_an_engine_collected_closes_its_sync_connections(tmp_path: Path) -> None:
    def bridges() -> int:
        return sum(thread.name == "aiojobs-sync-enqueue" for thread in threading.enumerate())

    before = bridges()
    engine: Engine | None = Engine(f"sqlite:///{tmp_path / 'gc.db'}")
    send = declare(engine)
    assert send.enqueue_sync(1) is not None
    assert bridges() == before + 1
    del engine, send
    gc.collect()
    asyncio.run(eventually(lambda: bridges() == before, timeout=10, message="the bridge thread ended"))
