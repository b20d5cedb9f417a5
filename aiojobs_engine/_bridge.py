"""Where sync callers' enqueues run: one daemon thread with an event loop and database
connections of its own, started by the first sync call of an engine.

Code that cannot await (Django and Flask views, plain threads) cannot call ``enqueue()``,
and ``asyncio.run()`` per call is a trap: each call makes a new loop, and connections or
locks made on one loop hang or fail on the next. Here every sync call goes to the same
long-lived loop, so 16 threads calling at once share one connection pool. The bridge never
borrows an engine's own loop, even one running in the same process: its life (open, close,
a fork) is then the bridge's alone, and a running engine picks the jobs up as it picks up
another process's (PostgreSQL's notifications, SQLite's change watch).

Closing waits a moment for the calls in flight, then cancels the rest, which raise
``EngineStateError`` (their job may or may not have been stored). After a fork (gunicorn's
pre-fork workers) the bridge starts afresh in the child: the thread did not survive the
fork, and the parent's connections are left alone rather than closed, since closing them
would end the parent's sessions too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ._backends import Backend
from ._errors import EngineStateError

T = TypeVar("T")

_CLOSE_GRACE = 5.0  # seconds the calls in flight get to finish when the bridge closes


class SyncBridge:
    """Run coroutines that need a backend on the bridge's loop, from any thread."""

    def __init__(self, open_backend: Callable[[], Awaitable[Backend]]) -> None:
        self._open_backend = open_backend
        self._lock = threading.Lock()  # guards _life and _pid, across callers' threads
        self._life: _Life | None = None
        self._pid = os.getpid()

    def call(self, work: Callable[[Backend], Awaitable[T]]) -> T:
        """``await work(backend)`` on the bridge's loop; blocks this thread until it is done."""
        with self._lock:
            if self._pid != os.getpid():  # forked: nothing of the parent's bridge is usable here
                self._pid, self._life = os.getpid(), None
            if self._life is None:
                self._life = _Life(self._open_backend)
            life = self._life
            future = life.submit(work)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise EngineStateError("close_sync() was called while this enqueue ran: the job may or may not "
                                   "have been stored") from None
        finally:
            life.done(future)

    def close(self) -> None:
        """Let calls in flight finish (a few seconds at most), cancel the rest, close the
        connections and stop the thread; a later call starts it all again."""
        with self._lock:
            life, self._life = self._life, None  # new calls start a new life from here on
            if life is None or self._pid != os.getpid():
                return
        life.close()


class _Life:
    """One life of the bridge: its thread, loop, backend and calls in flight."""

    def __init__(self, open_backend: Callable[[], Awaitable[Backend]]) -> None:
        self._open_backend = open_backend
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=_serve, args=(self._loop,), name="aiojobs-sync-enqueue", daemon=True)
        self._thread.start()
        self._in_flight: set[concurrent.futures.Future[Any]] = set()
        self._in_flight_lock = threading.Lock()
        # On the life's loop only:
        self._backend: Backend | None = None
        self._opening: asyncio.Task[Backend] | None = None

    def submit(self, work: Callable[[Backend], Awaitable[T]]) -> concurrent.futures.Future[T]:
        future = asyncio.run_coroutine_threadsafe(self._with_backend(work), self._loop)
        with self._in_flight_lock:
            self._in_flight.add(future)
        return future

    def done(self, future: concurrent.futures.Future[Any]) -> None:
        with self._in_flight_lock:
            self._in_flight.discard(future)

    def close(self) -> None:
        with self._in_flight_lock:
            in_flight = list(self._in_flight)
        concurrent.futures.wait(in_flight, timeout=_CLOSE_GRACE)
        for future in in_flight:
            future.cancel()  # cancels its task on the loop too
        if self._thread.is_alive():
            with contextlib.suppress(Exception):  # a database that is gone must not hang the closing
                asyncio.run_coroutine_threadsafe(self._close_backend(), self._loop).result(_CLOSE_GRACE)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(_CLOSE_GRACE)

    async def _with_backend(self, work: Callable[[Backend], Awaitable[T]]) -> T:
        return await work(await self._opened())

    async def _opened(self) -> Backend:
        """The backend. Callers that arrive while it opens share that one attempt (a
        database that is down fails them all at once, not one connect timeout each, in
        turn); the next caller after a failure tries again."""
        if self._backend is not None:
            return self._backend
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open_backend())
        opening = self._opening
        try:
            self._backend = await asyncio.shield(opening)
        finally:
            if self._opening is opening and opening.done():
                self._opening = None
        return self._backend

    async def _close_backend(self) -> None:
        backend, self._backend = self._backend, None
        if self._opening is not None:
            self._opening.cancel()
            self._opening = None
        if backend is not None:
            await backend.close()


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        for task in asyncio.all_tasks(loop):  # cancelled calls' leftovers: end them before closing
            task.cancel()
        with contextlib.suppress(Exception):
            loop.run_until_complete(asyncio.sleep(0))
        loop.close()
