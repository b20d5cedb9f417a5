"""Where sync callers' enqueues run: one daemon thread with an event loop and database
connections of its own, started by the first sync call of an engine and closed at exit.

Code that cannot await (Django and Flask views, plain threads) cannot call ``enqueue()``,
and ``asyncio.run()`` per call is a trap: each call makes a new loop, and connections or
locks made on one loop hang or fail on the next. Here every sync call goes to the same
long-lived loop, so 16 threads calling at once share one connection pool.

After a fork (gunicorn's pre-fork workers) the bridge starts afresh in the child: the
thread did not survive the fork, and the parent's connections are left alone rather than
closed, since closing them would end the parent's sessions too.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ._backends import Backend

T = TypeVar("T")

_CLOSE_TIMEOUT = 5.0  # seconds to close the bridge's connections at exit


class SyncBridge:
    """Run coroutines that need a backend on the bridge's loop, from any thread."""

    def __init__(self, open_backend: Callable[[], Awaitable[Backend]]) -> None:
        self._open_backend = open_backend
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._backend: Backend | None = None
        self._opening: asyncio.Lock | None = None  # made on the bridge's loop
        self._pid = os.getpid()
        atexit.register(_close_at_exit, weakref.ref(self))  # not a strong reference: engines come and go

    def call(self, work: Callable[[Backend], Awaitable[T]]) -> T:
        """``await work(backend)`` on the bridge's loop; blocks this thread until it is done."""
        loop = self._started()
        return asyncio.run_coroutine_threadsafe(self._with_backend(work), loop).result()

    def close(self) -> None:
        """Close the bridge's connections and stop its thread (a later call starts it again)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None or self._pid != os.getpid():
                return
            self._loop = self._thread = None
        if thread.is_alive():
            with contextlib.suppress(Exception):  # at exit: a database that is gone must not hang the process
                asyncio.run_coroutine_threadsafe(self._close_backend(), loop).result(_CLOSE_TIMEOUT)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(_CLOSE_TIMEOUT)

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._pid != os.getpid():  # forked: nothing of the parent's bridge is usable here
                self._pid = os.getpid()
                self._loop = self._thread = None
                self._backend = self._opening = None
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=_serve, args=(loop,), name="aiojobs-sync-enqueue", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
                self._backend = self._opening = None
            return self._loop

    async def _with_backend(self, work: Callable[[Backend], Awaitable[T]]) -> T:
        if self._backend is None:
            if self._opening is None:
                self._opening = asyncio.Lock()
            async with self._opening:
                if self._backend is None:  # a failed open is tried again by the next call
                    self._backend = await self._open_backend()
        return await work(self._backend)

    async def _close_backend(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            await backend.close()


def _close_at_exit(bridge: weakref.ref[SyncBridge]) -> None:
    alive = bridge()
    if alive is not None:
        alive.close()


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.close()
