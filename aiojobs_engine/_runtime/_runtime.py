"""The runtime: one engine at work. It builds the components, wires them together, owns
their tasks (one task group, each task named), and shuts them down in order.

    Producer ──claims──▶ Runner ──starts, outcomes──▶ Writer ──▶ backend
       ▲  ▲  slot back ◀──┘ │ ▲                          │
       │  └── wake ◀────────┼─┼──── each write's end ◀────┘
       │                     │ └── cancel, let go, stop all ◀── Notifier, Recovery
       └── jobs enqueued ◀── Notifier, Scheduler, Recovery, the engine's enqueue

Start-up: register under the worker id (taking back what an earlier life of the id left),
read the queue settings, start the heartbeat thread, then the loops.

Shutdown, in this order: stop claiming; let running jobs finish within the grace period
(cut short by an immediate stop); stop the loops; hand back what still runs; write the
last outcomes; stop heartbeating and unregister; close the process pool. If any loop dies,
the engine stops at once and re-raises: an engine stops rather than limps.

May call: every component, through the methods named in their docstrings.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from .._backends._protocol import Backend
from .._definitions import RunMode
from .._errors import EngineIdInUseError
from .._events import EventKind, JobEvent
from .._log import Event, logger
from .._options import QueueConfig
from .._records import QueueRecord
from ._maintenance import Maintenance
from ._notifier import Notifier
from ._outage import Outage
from ._periodic import Periodic
from ._process_pool import ProcessPool
from ._producer import Producer, ProducerLinks
from ._recovery import Recovery
from ._runner import Runner
from ._scheduler import Scheduler
from ._services import Services
from ._writer import Writer

_FLUSH_TIMEOUT = 10.0  # seconds to write the last outcomes at shutdown
_HAND_BACK_TIMEOUT = 5.0  # seconds to queue the hand-backs at shutdown
_LEFTOVER_TIMEOUT = 0.5  # seconds for cancelled leftovers (their outcomes are written already)


class Runtime:
    def __init__(self, services: Services, *, queues: Mapping[str, QueueConfig] | None,
                 open_backend: Callable[[], Backend], drain: bool = False) -> None:
        self._s = services
        self._drain = drain
        self._open_backend = open_backend
        self.outage = Outage(services.engine_id)
        self.pool = ProcessPool(
            services.settings.cpu_worker_count,
            preload=[d.import_path[0] for d in services.registry if d.mode is RunMode.PROCESS],
            on_broken=self._pool_broken,
        )
        self.writer = Writer(services, self.outage, on_written=lambda: self.producer.wake())
        self.runner = Runner(services, self.writer, self.pool,
                             release_slot=lambda queue: self.producer.release(queue),
                             capped=lambda queue: self.producer.capped(queue),
                             key_freed=lambda queue: self.producer.key_freed(queue),
                             on_idle=lambda: self.producer.wake())
        self.maintenance = Maintenance(services, self.runner, self.outage)
        self.recovery = Recovery(services, self.runner, jobs_back=lambda queues: self.producer.jobs_enqueued(queues),
                                 trusted_for=self.maintenance.trusted_for)
        self.producer = Producer(services, queues, ProducerLinks(
            start_run=self.runner.start,
            in_flight=lambda: self.runner.in_flight,
            starts_at_once=self.runner.starts_at_once,
            writer_behind=self.writer.behind,
            reconcile=self.recovery.hand_back_lost_claims,
        ), self.outage, drain=drain)
        self.scheduler = Scheduler(services, self.producer.jobs_enqueued)
        self.notifier = Notifier(
            services, on_enqueued=self.producer.jobs_enqueued, on_cancel=self.runner.cancel,
            on_queue_changed=self.producer.settings_changed, outage=self.outage,
        ) if services.backend.capabilities.supports_notify else None
        self._stop_requested = asyncio.Event()
        self._immediate = asyncio.Event()
        self._fatal: BaseException | None = None
        self._stopping_logged = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started = asyncio.Event()

    # -- what the engine calls ----------------------------------------------------------------

    def request_stop(self, *, immediate: bool = False) -> None:
        self._stop_requested.set()
        if immediate:
            self._immediate.set()

    def jobs_enqueued(self, queues: Sequence[str] | None) -> None:
        self.producer.jobs_enqueued(queues)

    def queue_changed(self, record: QueueRecord) -> None:
        self.producer.queue_changed(record)

    def cancel_local(self, job_id: int) -> None:
        self.runner.cancel(job_id)

    # -- the run ----------------------------------------------------------------------------------

    async def run(self) -> int:
        """Work until stopped (or, draining, until nothing is left); the attempts started."""
        self._loop = asyncio.get_running_loop()
        await self.recovery.register()
        try:
            await self.recovery.take_back()
            if self._drain:
                await self.recovery.rescue()  # a workoff also runs the jobs of engines that died
            await self.producer.refresh()
            self.maintenance.start_heartbeat(self._open_backend, on_lost=self._lost_id_from_thread,
                                             on_revived=self._revived_from_thread)
            try:
                async with asyncio.TaskGroup() as group:
                    tasks = {name: group.create_task(loop, name=f"aiojobs-{name}") for name, loop in self._loops()}
                    self._announce(Event.ENGINE_STARTED, EventKind.ENGINE_STARTED, "started")
                    self.started.set()
                    await self._until_stop_or_drained(tasks["producer"])
                    await self._wind_down(tasks["producer"])
                    for task in tasks.values():
                        task.cancel()
            except* Exception as died:
                self._fatal = died.exceptions[0]
                logger.critical("a component of engine %s died; the engine stops: %r", self._s.engine_id,
                                self._fatal, exc_info=self._fatal,
                                extra={"event": Event.ENGINE_CRASHED, "engine_id": self._s.engine_id})
        finally:
            await _to_the_end(self._close())
        if self._fatal is not None:
            raise self._fatal
        return self.runner.attempts_started

    def _loops(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        settings = self._s.settings
        loops: list[tuple[str, Coroutine[Any, Any, None]]] = [
            ("producer", self.producer.run()),
            ("claim-watch", Periodic("claim watch", settings.poll_interval, self.recovery.watch_claims,
                                     self.outage).run()),
            *self.maintenance.loops(drain=self._drain),
        ]
        if not self._drain:
            loops += [
                ("reaper", Periodic("reaper", settings.reaper_interval, self.recovery.rescue, self.outage).run()),
                ("scheduler", Periodic("scheduler", min(1.0, settings.poll_interval), self.scheduler.step,
                                       self.outage).run()),
            ]
        if self.notifier is not None:
            loops.append(("notifier", self.notifier.run()))
        return loops

    async def _until_stop_or_drained(self, producer: asyncio.Task[None]) -> None:
        stop = asyncio.ensure_future(self._stop_requested.wait())
        try:
            await asyncio.wait([producer, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()

    async def _wind_down(self, producer: asyncio.Task[None]) -> None:
        """Stop claiming, then give running jobs the grace period (unless told to hurry)."""
        self._log_stopping()
        self.producer.stop()
        await asyncio.wait([producer], timeout=5.0)
        if self.runner.in_flight and not self._immediate.is_set():
            idle = asyncio.ensure_future(self.runner.wait_idle())
            immediate = asyncio.ensure_future(self._immediate.wait())
            await asyncio.wait({idle, immediate}, timeout=self._s.settings.shutdown_grace,
                               return_when=asyncio.FIRST_COMPLETED)
            idle.cancel()
            immediate.cancel()

    async def _close(self) -> None:
        """Hand back what still runs, write the last outcomes, and leave (whatever happened)."""
        self._log_stopping()
        self.producer.stop()
        try:
            handed = await self.runner.hand_back_all(_HAND_BACK_TIMEOUT)
            if handed:
                logger.warning("handed %d running job(s) back to waiting", handed,
                               extra={"event": Event.JOBS_HANDED_BACK, "engine_id": self._s.engine_id})
            await self.writer.close(_FLUSH_TIMEOUT)
            await self.runner.close(_LEFTOVER_TIMEOUT)
        finally:
            try:
                await self.maintenance.stop_heartbeat()
                await self.recovery.unregister()
            finally:
                await self.pool.close()
        self._announce(Event.ENGINE_STOPPED, EventKind.ENGINE_STOPPED, "stopped")

    def _log_stopping(self) -> None:
        if not self._stopping_logged:
            self._stopping_logged = True
            logger.info("engine %s stopping", self._s.engine_id,
                        extra={"event": Event.ENGINE_STOPPING, "engine_id": self._s.engine_id})

    def _announce(self, event: str, kind: str, what: str) -> None:
        logger.info("engine %s %s", self._s.engine_id, what, extra={"event": event, "engine_id": self._s.engine_id})
        if self._s.events.wants(kind):
            self._s.events.emit(JobEvent(kind=kind, at=self._s.clock.now(), engine_id=self._s.engine_id))

    def _pool_broken(self, error: Exception) -> None:
        """No CPU worker can ever start (see ``_reimport``): the engine stops with why."""
        if self._fatal is None:
            self._fatal = error
        self.request_stop(immediate=True)

    # -- from the heartbeat thread ----------------------------------------------------------------

    def _lost_id_from_thread(self) -> None:
        """Another incarnation holds our worker id: this engine stops."""
        def lost() -> None:
            self._fatal = EngineIdInUseError(
                f"engine id {self._s.engine_id!r} was taken over by another engine; this one stops")
            self.request_stop(immediate=True)

        self._call_soon(lost)

    def _revived_from_thread(self) -> None:
        self._call_soon(self.recovery.revived)

    def _call_soon(self, callback: Callable[[], object]) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(callback)


async def _to_the_end(shutdown: Coroutine[Any, Any, None]) -> None:
    """Run the shutdown to its end even if cancelled (again) meanwhile, then re-raise that."""
    task = asyncio.ensure_future(shutdown)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    task.result()
    if cancelled:
        raise asyncio.CancelledError
