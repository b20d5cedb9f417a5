"""Whether the database can be reached, as this engine's components find it.

Owns: the log of an outage. When the database goes away every component notices on its own
(claims, writes, the listener, the heartbeat thread, the reaper, cron); each reports here,
and the engine logs one warning when the first of them fails and one line when one of those
that failed succeeds again, however many retries happen in between. (Only those: in a
partial outage, say a pool that cannot open connections while the heartbeat's connection
works, a component that never failed proves nothing.) Components retry on their own
schedule and say nothing per retry.

Back-offs go through ``pause``: it sleeps as long as asked, whatever else would wake the
component, unless the outage its caller failed in ends meanwhile, or has ended already
(``failed`` returns which outage that was): then the caller retries at once.

Thread-safe: the heartbeat thread reports too.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

from .._log import Event, logger


class Outage:
    def __init__(self, engine_id: str) -> None:
        self._engine_id = engine_id
        self._lock = threading.Lock()
        self._since: float | None = None  # time.monotonic() of the first failure, while down
        self._failing: set[str] = set()  # the components that failed during this outage
        self._ended = 0  # outages ended so far: which one a failure belongs to
        self._paused: set[asyncio.Future[None]] = set()  # back-offs to cut short when one ends
        self._loop: asyncio.AbstractEventLoop | None = None
        self.count = 0  # outages seen

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, component: str, error: BaseException) -> int:
        """``component`` could not reach the database (``BackendUnavailableError``); which
        outage that was, for ``pause(after=...)``."""
        with self._lock:
            self._failing.add(component)
            outage = self._ended
            if self._since is not None:
                return outage
            self._since = time.monotonic()
            self.count += 1
        logger.warning(
            "the database cannot be reached (%s: %s); claims, writes and maintenance retry until it is back",
            component, str(error) or type(error).__name__,
            extra={"event": Event.DATABASE_DOWN, "engine_id": self._engine_id, "component": component},
        )
        return outage

    def succeeded(self, component: str) -> None:
        """A statement of ``component`` went through: if it had failed, the outage is over."""
        if self._since is None:  # the common case, without the lock
            return
        since = self._end(component)
        if since is None:  # this component had not failed, or another thread ended it first
            return
        logger.info("the database is reachable again, after %.1fs", time.monotonic() - since,
                    extra={"event": Event.DATABASE_UP, "engine_id": self._engine_id})
        self._wake_paused()

    def _end(self, component: str) -> float | None:
        with self._lock:
            if component not in self._failing:
                return None
            since, self._since = self._since, None
            self._failing.clear()
            self._ended += 1
        return since

    def _wake_paused(self) -> None:
        loop = self._loop
        if loop is None:
            return  # nothing ever paused; a later pause sees the outage ended (``after``)
        try:
            here = asyncio.get_running_loop() is loop
        except RuntimeError:
            here = False
        if here:
            self._resume()
        else:  # from the heartbeat thread: hand it to the engine's loop
            with contextlib.suppress(RuntimeError):  # that loop is closed
                loop.call_soon_threadsafe(self._resume)

    def _resume(self) -> None:
        for paused in self._paused:
            if not paused.done():
                paused.set_result(None)

    async def pause(self, seconds: float, *, after: int | None = None, unless: asyncio.Event | None = None) -> None:
        """Back off for ``seconds``; at once if the outage ``after`` (from ``failed``) ends, or
        has ended already; or when ``unless`` is set."""
        if after is not None and after != self._ended:
            return  # the outage it failed in is over: retry now
        loop = self._loop = asyncio.get_running_loop()
        back: asyncio.Future[None] = loop.create_future()
        self._paused.add(back)
        waits: list[asyncio.Future[Any]] = [back]
        if unless is not None:
            waits.append(asyncio.ensure_future(unless.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._paused.discard(back)
            for wait in waits:
                wait.cancel()
