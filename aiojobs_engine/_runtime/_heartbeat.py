"""The heartbeat: proof, in the database, that this engine is alive.

It runs in its own thread, with its own event loop and its own database connection, so a
job that blocks the engine's loop does not get its engine declared dead. It is honest,
though: when the loop has been blocked longer than ``blocked_loop_limit`` it stops beating
(and says why), so a wedged engine's jobs are rescued by others.

The loop and the connection are made when the first beat is due, one interval after the
start (registering gave the engine a fresh heartbeat): an engine that stops sooner, as a
short ``workoff()`` does, never pays for them.

Outcomes of a beat: ``BEAT`` (normal); ``REVIVED`` (another engine's reaper had declared
this one dead and rescued its jobs; their late outcomes here will be refused by fencing);
``LOST`` (another incarnation took this worker id: this engine must stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable

from .._backends._protocol import Backend, Heartbeat
from .._log import Event, logger
from ._loop_monitor import LoopMonitor
from ._services import Services


class HeartbeatThread:
    def __init__(
        self,
        services: Services,
        open_backend: Callable[[], Backend],
        monitor: LoopMonitor,
        on_lost: Callable[[], None],
        on_revived: Callable[[], None],
    ) -> None:
        self._s = services
        self._open_backend = open_backend
        self._monitor = monitor
        self._on_lost = on_lost
        self._on_revived = on_revived
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._main, name=f"aiojobs-heartbeat-{services.engine_id}", daemon=True
        )
        self._last_success = time.monotonic()
        self._last_failure = float("-inf")
        self._warned_blocked = False
        self._warned_silent = False
        self.beats = 0

    def start(self) -> None:
        self._thread.start()

    @property
    def died(self) -> bool:
        """The thread ended without being asked to (a bug): the engine must not go on."""
        return not self._thread.is_alive() and not self._stop.is_set()

    def healthy_for(self) -> float:
        """Seconds since a heartbeat last failed (infinite if none ever did)."""
        return time.monotonic() - self._last_failure

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _main(self) -> None:
        try:
            self._beat_until_stopped()
        except Exception:
            logger.exception("the heartbeat thread failed", extra={"event": Event.HEARTBEAT_FAILED,
                                                                   "engine_id": self._s.engine_id})

    def _beat_until_stopped(self) -> None:
        if self._stop.wait(self._s.settings.heartbeat_interval):
            return  # stopped before the first beat was due (a short workoff): nothing built
        # asyncio's own loop, not the policy's: a statement every few seconds needs no
        # uvloop, whose loop costs about 0.2 MiB of resident memory more (measured).
        loop = asyncio.SelectorEventLoop()
        backend = self._open_backend()
        try:
            opened = False
            while True:
                if not opened:
                    opened = self._try(loop, backend.open(), "open a connection")
                    if not opened:
                        self._last_failure = time.monotonic()
                if opened and self._loop_is_sane():
                    self._beat(loop, backend)
                if self._stop.wait(self._s.settings.heartbeat_interval):
                    break
        finally:
            with contextlib.suppress(Exception):  # closing a connection that may be broken
                loop.run_until_complete(backend.close())
            loop.close()

    def _loop_is_sane(self) -> bool:
        settings = self._s.settings
        blocked = self._monitor.blocked_for()
        if blocked > settings.blocked_loop_limit:
            if not self._warned_blocked:
                logger.error(
                    "the event loop has been blocked for %.0fs (limit %.0fs); this engine stops "
                    "heartbeating so its jobs can be rescued elsewhere. Blocked at:\n%s",
                    blocked, settings.blocked_loop_limit, self._monitor.where(),
                    extra={"event": Event.HEARTBEAT_SUSPENDED, "engine_id": self._s.engine_id},
                )
                self._warned_blocked = True
            return False
        if blocked > settings.loop_lag_warning and not self._warned_blocked:
            logger.warning(
                "the event loop has been blocked for %.1fs; a job may be calling blocking code "
                "from an async function. Blocked at:\n%s", blocked, self._monitor.where(),
                extra={"event": Event.LOOP_BLOCKED, "engine_id": self._s.engine_id},
            )
            self._warned_blocked = True
        elif blocked <= settings.loop_lag_warning:
            self._warned_blocked = False
        return True

    def _beat(self, loop: asyncio.AbstractEventLoop, backend: Backend) -> None:
        interval = self._s.settings.heartbeat_interval
        try:
            result = loop.run_until_complete(asyncio.wait_for(
                backend.engine_heartbeat(self._s.registration, now=self._s.clock.for_database()),
                timeout=max(interval, 1.0),
            ))
        except Exception as exc:
            self._last_failure = time.monotonic()
            silent = time.monotonic() - self._last_success
            logger.warning("heartbeat failed (%s); silent for %.1fs", _describe(exc), silent,
                           extra={"event": Event.HEARTBEAT_FAILED, "engine_id": self._s.engine_id})
            if silent > self._s.settings.stale_after and not self._warned_silent:
                logger.error(
                    "no heartbeat for %.0fs (stale_after %.0fs): other engines may rescue this "
                    "engine's jobs, and outcomes of jobs running here will then be refused",
                    silent, self._s.settings.stale_after,
                    extra={"event": Event.HEARTBEAT_FAILED, "engine_id": self._s.engine_id},
                )
                self._warned_silent = True
            return
        self._last_success = time.monotonic()
        self._warned_silent = False
        self.beats += 1
        if result is Heartbeat.REVIVED and self._stop.is_set():
            # A beat that outlasted the engine's shutdown re-created the row it had just
            # deleted: delete it again, or it would look like a live engine for stale_after.
            self._try(loop, backend.engine_unregister(self._s.engine_id, self._s.registration.incarnation),
                      "unregister after a late beat")
        elif result is Heartbeat.REVIVED:
            self._on_revived()
            logger.error(
                "engine %s had been declared dead by another engine (no heartbeat for over %.0fs); "
                "its jobs were rescued and their outcomes here will be refused",
                self._s.engine_id, self._s.settings.stale_after,
                extra={"event": Event.ENGINE_REVIVED, "engine_id": self._s.engine_id},
            )
        elif result is Heartbeat.LOST:
            self._on_lost()
            self._stop.set()

    def _try(self, loop: asyncio.AbstractEventLoop, coroutine: object, what: str) -> bool:
        try:
            loop.run_until_complete(coroutine)  # type: ignore[arg-type]
        except Exception as exc:
            logger.warning("heartbeat could not %s: %s", what, _describe(exc),
                           extra={"event": Event.HEARTBEAT_FAILED, "engine_id": self._s.engine_id})
            return False
        return True


def _describe(exc: BaseException) -> str:
    """The error's message, or its type when the message is empty (``TimeoutError()``)."""
    return str(exc) or type(exc).__name__
