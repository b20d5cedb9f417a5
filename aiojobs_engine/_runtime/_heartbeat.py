"""The heartbeat: proof, in the database, that this engine is alive.

It runs in its own thread, with its own event loop and its own database connection, so a
job that blocks the engine's loop does not get its engine declared dead. It is honest,
though: when the loop has been blocked longer than ``blocked_loop_limit`` it stops beating
(and says why), so a wedged engine's jobs are rescued by others.

The loop and the connection are made when the first beat is due, one interval after the
start (registering gave the engine a fresh heartbeat): an engine that stops sooner, as a
short ``workoff()`` does, never pays for them.

The loop monitor (a task on the engine's loop stamping the time every ``TICK``) is how the
thread knows the loop turns. At a beat that finds the loop blocked longer than
``loop_lag_warning`` it logs how long, by which job (the task the loop is running) and
where; again at the first beat ten ``loop_lag_warning`` later, and so on while the block
lasts; and one line when the loop turns again. A monitor that has stopped (the engine is
shutting down) reports nothing.

Outcomes of a beat: ``BEAT`` (normal); ``REVIVED`` (another engine's reaper had declared
this one dead and rescued its jobs; their late outcomes here will be refused by fencing);
``LOST`` (another incarnation took this worker id: this engine must stop). A failed beat is
reported to ``Outage`` (logged once per outage), and once more, as an error, when the engine
has been silent longer than ``stale_after``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
import traceback
from collections.abc import Callable

from .._backends._protocol import Backend, Heartbeat
from .._log import Event, logger
from .._records import JobRecord
from ._outage import Outage
from ._services import Services

TICK = 0.1
REPEAT_EVERY = 10  # a blocked loop is reported again every this many loop_lag_warning


class LoopMonitor:
    """Proves, to the heartbeat thread, that the engine's event loop still turns."""

    def __init__(self, jobs_of_task: Callable[[asyncio.Task[object] | None], list[JobRecord]] | None = None) -> None:
        self._last_tick = time.monotonic()
        self._loop_thread = threading.get_ident()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._jobs_of_task = jobs_of_task
        self._running = False

    async def run(self) -> None:
        self._loop_thread = threading.get_ident()
        self._loop = asyncio.get_running_loop()
        self._running = True
        try:
            while True:
                self._last_tick = time.monotonic()
                await asyncio.sleep(TICK)
        finally:
            self._running = False

    def blocked_for(self) -> float:
        """Seconds since the loop last turned, beyond the normal tick (0 once the monitor stopped)."""
        if not self._running:
            return 0.0
        return max(0.0, time.monotonic() - self._last_tick - TICK)

    def where(self) -> str:
        """The innermost frames of the loop's thread: what is blocking it."""
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return "unknown"
        return "".join(traceback.format_stack(frame, limit=6)).rstrip()

    def jobs(self) -> list[JobRecord]:
        """The job(s) whose run the loop is running now (read from another thread)."""
        if self._loop is None or self._jobs_of_task is None:
            return []
        return self._jobs_of_task(asyncio.current_task(self._loop))


class HeartbeatThread:
    def __init__(
        self,
        services: Services,
        open_backend: Callable[[], Backend],
        monitor: LoopMonitor,
        on_lost: Callable[[], None],
        on_revived: Callable[[], None],
        outage: Outage | None = None,
    ) -> None:
        self._s = services
        self._open_backend = open_backend
        self._monitor = monitor
        self._on_lost = on_lost
        self._on_revived = on_revived
        self._outage = outage or Outage(services.engine_id)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._main, name=f"aiojobs-heartbeat-{services.engine_id}", daemon=True
        )
        self._last_success = time.monotonic()
        self._last_failure = float("-inf")
        self._warned_blocked_at = 0.0  # how long the loop had been blocked at the last warning
        self._suspended = False
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
        # asyncio's own loop, not the policy's: a statement every few seconds needs no uvloop,
        # whose loop weighs more (docs/decisions/2026-12-06-heartbeat-asyncio-loop.md).
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
        """Is the engine's loop turning (else: say so, and past the limit, stop beating)?"""
        settings = self._s.settings
        blocked = self._monitor.blocked_for()
        if blocked <= settings.loop_lag_warning:
            if self._warned_blocked_at:
                logger.info("the event loop turns again, after being blocked for at least %.1fs",
                            self._warned_blocked_at, extra={"event": Event.LOOP_BLOCKED,
                                                            "engine_id": self._s.engine_id})
            self._warned_blocked_at = 0.0
            self._suspended = False
            return True
        jobs = self._monitor.jobs()
        by = (", ".join(f"job {job.id} ({job.name})" for job in jobs) if jobs
              else "no job of this engine (other code on the loop)")
        extra: dict[str, object] = {"engine_id": self._s.engine_id}
        if jobs:
            extra |= {"job_id": jobs[0].id, "job_name": jobs[0].name, "queue": jobs[0].queue}
        if blocked > settings.blocked_loop_limit:
            if not self._suspended:
                logger.error(
                    "the event loop has been blocked for %.0fs (limit %.0fs) by %s; this engine stops "
                    "heartbeating so its jobs can be rescued elsewhere. Blocked at:\n%s",
                    blocked, settings.blocked_loop_limit, by, self._monitor.where(),
                    extra={"event": Event.HEARTBEAT_SUSPENDED, **extra},
                )
                self._suspended = True
            return False
        if not self._warned_blocked_at or blocked >= self._warned_blocked_at + REPEAT_EVERY * settings.loop_lag_warning:
            logger.warning(
                "the event loop has been blocked for %.1fs by %s; a job may be calling blocking code from an "
                "async function. Blocked at:\n%s", blocked, by, self._monitor.where(),
                extra={"event": Event.LOOP_BLOCKED, **extra},
            )
            self._warned_blocked_at = blocked
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
            self._outage.failed("heartbeat", exc)
            silent = time.monotonic() - self._last_success
            if silent > self._s.settings.stale_after and not self._warned_silent:
                logger.error(
                    "no heartbeat for %.0fs (stale_after %.0fs; last error: %s): other engines may rescue this "
                    "engine's jobs, and outcomes of jobs running here will then be refused",
                    silent, self._s.settings.stale_after, _describe(exc),
                    extra={"event": Event.HEARTBEAT_FAILED, "engine_id": self._s.engine_id},
                )
                self._warned_silent = True
            return
        self._outage.succeeded("heartbeat")
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
            self._outage.failed("heartbeat", exc)
            return False
        return True


def _describe(exc: BaseException) -> str:
    """The error's message, or its type when the message is empty (``TimeoutError()``)."""
    return str(exc) or type(exc).__name__
