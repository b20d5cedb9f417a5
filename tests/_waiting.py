"""Waiting in tests without sleeping: for a condition, for engine events, for backend calls.

- ``await eventually(check)``: retries ``check`` (sync or async) until it returns something
  truthy or stops raising ``AssertionError``; returns that value. For conditions that no
  engine signal reports: the state of other processes, of the server, of a file.
- ``async with events(engine, kinds=...) as seen``: records the engine's ``JobEvent``s from
  the moment the block opens, so ``await seen.wait_for(...)`` never misses one that came
  before the wait began.
- ``async with backend_calls(engine, "job_claim") as calls``: counts the calls this engine
  makes to one method of its backend (the public ``Backend`` interface). ``await
  calls.more(n)`` is how a test says "the engine has polled n more times": the way to prove
  that something does *not* happen without guessing how long to wait.
- ``still_running(process)``: inside a check, a subprocess that exited fails the test at
  once instead of being waited for until the timeout.
- ``async with LogWatch() as logs``: the engine's log records, handed to the test's loop as
  they come (the heartbeat thread logs too); ``await logs.wait_for("loop.blocked")``.

Every wait has a timeout and fails with what it was waiting for, never hangs.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, TypeVar

import pytest

from aiojobs_engine import Engine, JobEvent

T = TypeVar("T")

__all__ = ["BackendCalls", "LogWatch", "SeenEvents", "backend_calls", "events", "eventually", "still_running"]


async def eventually(check: Callable[[], T | Awaitable[T]], *, timeout: float = 5.0, interval: float = 0.01,
                     message: str | None = None) -> T:
    """Call ``check`` until it returns a truthy value (returned) or ``timeout`` seconds pass.

    ``check`` may be a plain or an async callable. Returning something falsy, or raising
    ``AssertionError``, means "not yet"; any other exception ends the wait at once (a process
    that died will not come back). On timeout an ``AssertionError`` says what was awaited
    (``message``) and what the last attempt found.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: AssertionError | None = None
    found: object = None
    while True:
        try:
            async with asyncio.timeout_at(deadline):
                result = check()
                if inspect.isawaitable(result):
                    result = await result
        except TimeoutError:
            if loop.time() < deadline:
                raise  # the check's own timeout, not ours
            break
        except AssertionError as error:
            last, found = error, None
        else:
            if result:
                return result  # type: ignore[return-value]
            last, found = None, result
        if loop.time() + interval >= deadline:
            break
        await asyncio.sleep(interval)
    what = message or getattr(check, "__name__", "the condition")
    detail = f": {last}" if last is not None else f" (last returned {found!r})"
    raise AssertionError(f"{what}: not met within {timeout:g}s{detail}") from last


def still_running(process: subprocess.Popen[Any]) -> None:
    """Inside a check: a process that exited fails the test at once (``eventually`` retries
    only ``AssertionError``), with what it printed."""
    if process.poll() is not None:
        out, err = process.communicate()
        pytest.fail(f"the process exited with code {process.returncode}: {out!r} {err!r}")


class SeenEvents:
    """The events an engine (or several) emitted since the ``events()`` block opened."""

    def __init__(self) -> None:
        self.events: list[JobEvent] = []
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._changed = asyncio.Event()

    def _add(self, event: JobEvent) -> None:
        # Listeners run on the engine's loop; be safe if one day an event comes from a thread.
        self.events.append(event)
        if threading.get_ident() == self._thread:
            self._changed.set()
        else:
            self._loop.call_soon_threadsafe(self._changed.set)

    def matching(self, predicate: Callable[[JobEvent], object] | None = None) -> list[JobEvent]:
        return [e for e in self.events if predicate is None or predicate(e)]

    async def wait_for(self, predicate: Callable[[JobEvent], object] | None = None, *, count: int = 1,
                       timeout: float = 5.0) -> list[JobEvent]:
        """Until ``count`` events matching ``predicate`` (any event if None) have been seen;
        returns them (every match so far, oldest first)."""
        try:
            async with asyncio.timeout(timeout):
                while len(found := self.matching(predicate)) < count:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            kinds = [f"{e.kind}#{e.job.id if e.job else '-'}" for e in self.events]
            raise AssertionError(f"expected {count} matching event(s) within {timeout:g}s, saw "
                                 f"{len(self.matching(predicate))}; all events: {kinds}") from None
        return found


@asynccontextmanager
async def events(*engines: Engine, kinds: Iterable[str] | None = None) -> AsyncIterator[SeenEvents]:
    """Record the events of ``engines`` (of the ``kinds`` given, else all) inside the block."""
    seen = SeenEvents()
    chosen = None if kinds is None else frozenset(kinds)
    unsubscribes = [engine.subscribe(seen._add, kinds=chosen) for engine in engines]
    try:
        yield seen
    finally:
        for unsubscribe in unsubscribes:
            unsubscribe()


class BackendCalls:
    """How many calls to one backend method have returned since the block opened."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.count = 0
        self._changed = asyncio.Event()

    def _returned(self) -> None:
        self.count += 1
        self._changed.set()

    async def until(self, total: int, *, timeout: float = 5.0) -> int:
        """Until ``total`` calls have returned since the block opened; returns the count."""
        try:
            async with asyncio.timeout(timeout):
                while self.count < total:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"expected {total} call(s) of backend.{self.method} within {timeout:g}s, "
                                 f"got {self.count}") from None
        return self.count

    async def more(self, n: int, *, timeout: float = 5.0) -> int:
        """Until ``n`` more calls have returned than when this wait began ("n more polls")."""
        return await self.until(self.count + n, timeout=timeout)


@asynccontextmanager
async def backend_calls(engine: Engine, method: str) -> AsyncIterator[BackendCalls]:
    """Count the calls ``engine`` makes to ``engine.backend.<method>`` (the engine must be open)."""
    backend = engine.backend
    original: Callable[..., Awaitable[Any]] = getattr(backend, method)
    calls = BackendCalls(method)
    patched_before = method in vars(backend)  # a test's own stand-in: put it back as it was

    async def counted(*args: Any, **kwargs: Any) -> Any:
        try:
            return await original(*args, **kwargs)
        finally:
            calls._returned()

    setattr(backend, method, counted)
    try:
        yield calls
    finally:
        if vars(backend).get(method) is counted:
            if patched_before:
                setattr(backend, method, original)
            else:
                delattr(backend, method)


_LOGGER = "aiojobs_engine"


class LogWatch(logging.Handler):
    def __init__(self, level: int = logging.DEBUG) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()
        self._old_level = logging.NOTSET

    async def __aenter__(self) -> LogWatch:
        self._loop = asyncio.get_running_loop()
        logger = logging.getLogger(_LOGGER)
        self._old_level = logger.level
        logger.setLevel(min(self.level, logger.getEffectiveLevel()))
        logger.addHandler(self)
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        logger = logging.getLogger(_LOGGER)
        logger.removeHandler(self)
        logger.setLevel(self._old_level)

    def emit(self, record: logging.LogRecord) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._add, record)

    def _add(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self._changed.set()

    def of(self, event: str) -> list[logging.LogRecord]:
        return [r for r in self.records if getattr(r, "event", None) == event]

    async def wait_for(self, event: str, check: Callable[[logging.LogRecord], bool] = lambda r: True,
                       timeout: float = 10.0) -> logging.LogRecord:
        """The first record of ``event`` that passes ``check``, waiting for it if need be."""
        async with asyncio.timeout(timeout):
            while True:
                for record in self.of(event):
                    if check(record):
                        return record
                self._changed.clear()
                await self._changed.wait()
