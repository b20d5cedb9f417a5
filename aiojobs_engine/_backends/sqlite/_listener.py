"""SQLite's stand-in for LISTEN/NOTIFY: a watch on ``PRAGMA data_version``.

SQLite cannot send notifications, but each connection can ask cheaply whether any other
connection has committed since it last asked: ``PRAGMA data_version`` changes then, and
only then (this connection's own commits leave it alone). The watch asks every
``CHANGE_POLL_INTERVAL`` seconds on the backend's own connection and reports ``changed``
when the answer moves, so an idle engine starts a job enqueued by another process within
tens of milliseconds instead of a whole poll interval. It reads nothing from disk while
nothing changes (the answer comes from the WAL index in shared memory), and costs one tiny
statement per interval; what it cannot tell (what changed) the dispatcher's claim finds out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Final

from ..._errors import BackendError, BackendUnavailableError
from .._protocol import NOTIFY_CHANGED

CHANGE_POLL_INTERVAL: Final = 0.05


class SQLiteChangeListener:
    """A running watch on the database's data version (implements ``Listener``)."""

    def __init__(self, read_version: Callable[[], Awaitable[int]], on_notify: Callable[[str], None],
                 interval: float = CHANGE_POLL_INTERVAL) -> None:
        self._read_version = read_version
        self._on_notify = on_notify
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        version = await self._read_version()
        self._task = asyncio.create_task(self._watch(version), name="aiojobs-sqlite-change-watch")

    async def _watch(self, version: int) -> None:
        while True:
            await asyncio.sleep(self._interval)
            current = await self._read_version()
            if current != version:
                version = current
                self._on_notify(NOTIFY_CHANGED)

    async def wait_lost(self) -> None:
        if self._task is not None:
            await asyncio.wait({self._task})

    async def check(self) -> None:
        task = self._task
        if task is None or not task.done():
            return
        error = None if task.cancelled() else task.exception()
        raise BackendUnavailableError(f"the SQLite change watch stopped: {error!r}")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, BackendError):
                await task
