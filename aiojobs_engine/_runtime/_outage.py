"""Whether the database can be reached, as this engine's components find it.

Owns: the log of an outage. When the database goes away every component notices on its own
(claims, writes, the listener, the heartbeat thread, the reaper, cron); each reports here,
and the engine logs one warning when the first of them fails and one line when one of them
succeeds again, however many retries happen in between. Components retry on their own
schedule and say nothing per retry.

Thread-safe: the heartbeat thread reports too.
"""

from __future__ import annotations

import threading
import time

from .._log import Event, logger


class Outage:
    def __init__(self, engine_id: str) -> None:
        self._engine_id = engine_id
        self._lock = threading.Lock()
        self._since: float | None = None  # time.monotonic() of the first failure, while down
        self.count = 0  # outages seen (tests)

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, component: str, error: BaseException) -> None:
        """``component`` could not reach the database (``BackendUnavailableError``)."""
        with self._lock:
            if self._since is not None:
                return
            self._since = time.monotonic()
            self.count += 1
        logger.warning(
            "the database cannot be reached (%s: %s); claims, writes and maintenance retry until it is back",
            component, str(error) or type(error).__name__,
            extra={"event": Event.DATABASE_DOWN, "engine_id": self._engine_id, "component": component},
        )

    def succeeded(self) -> None:
        """A statement went through: if an outage was on, it is over."""
        if self._since is None:  # the common case, without the lock
            return
        with self._lock:
            since, self._since = self._since, None
        if since is not None:
            logger.info("the database is reachable again, after %.1fs", time.monotonic() - since,
                           extra={"event": Event.DATABASE_UP, "engine_id": self._engine_id})
