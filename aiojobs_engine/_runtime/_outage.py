"""Whether the database can be reached, as this engine's components find it.

Owns: the log of an outage. When the database goes away every component notices on its own
(claims, writes, the listener, the heartbeat thread, the reaper, cron); each reports here,
and the engine logs one warning when the first of them fails and one line when one of those
that failed succeeds again, however many retries happen in between. (Only those: in a
partial outage, say a pool that cannot open connections while the heartbeat's connection
works, a component that never failed proves nothing.) Components retry on their own
schedule and say nothing per retry.

Back-offs go through ``pause``: it sleeps as long as asked, whatever else would wake the
component, unless the database comes back meanwhile (any component's statement went
through): then every paused component retries at once.

Thread-safe: the heartbeat thread reports too.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

from .._log import Event, logger


class Outage:
    def __init__(self, engine_id: str) -> None:
        self._engine_id = engine_id
        self._lock = threading.Lock()
        self._since: float | None = None  # time.monotonic() of the first failure, while down
        self._failing: set[str] = set()  # the components that failed during this outage
        self._back: asyncio.Event | None = None  # set when an outage ends (made on the engine's loop)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.count = 0  # outages seen

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, component: str, error: BaseException) -> None:
        """``component`` could not reach the database (``BackendUnavailableError``)."""
        with self._lock:
            self._failing.add(component)
            if self._since is not None:
                return
            self._since = time.monotonic()
            self.count += 1
        logger.warning(
            "the database cannot be reached (%s: %s); claims, writes and maintenance retry until it is back",
            component, str(error) or type(error).__name__,
            extra={"event": Event.DATABASE_DOWN, "engine_id": self._engine_id, "component": component},
        )

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
        return since

    def _wake_paused(self) -> None:
        back, loop = self._back, self._loop
        if back is None or loop is None:
            return
        try:
            here = asyncio.get_running_loop() is loop
        except RuntimeError:
            here = False
        if here:
            back.set()
        else:  # from the heartbeat thread: hand it to the engine's loop
            with contextlib.suppress(RuntimeError):  # that loop is closed
                loop.call_soon_threadsafe(back.set)

    async def pause(self, seconds: float, *, unless: asyncio.Event | None = None) -> None:
        """Back off for ``seconds``, or until the database is back, or until ``unless`` is set."""
        if self._back is None:
            self._back, self._loop = asyncio.Event(), asyncio.get_running_loop()
        if self.down:
            self._back.clear()
        elif self._back.is_set():
            self._back.clear()
            return  # it came back since this component last failed: retry now
        waits = [asyncio.ensure_future(self._back.wait())]
        if unless is not None:
            waits.append(asyncio.ensure_future(unless.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
