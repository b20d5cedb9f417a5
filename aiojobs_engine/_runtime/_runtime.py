"""The runtime: one engine at work, composing its components and owning their tasks.

Start-up: register the engine (refusing an id another live engine holds), take back this
id's orphaned jobs, write the configured queue settings, start the heartbeat thread, then
the loops (dispatcher, loop monitor, claim watcher, reaper).

Shutdown, in this order: stop claiming; let running jobs finish within the grace period
(cut short by an immediate stop); hand back what still runs; flush outcomes; stop the
loops; stop heartbeating and unregister; close the process pool. If any component dies,
the runtime shuts down immediately and re-raises: an engine stops rather than limps.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from .._backends._protocol import Backend
from .._definitions import RunMode
from .._errors import BackendError, EngineIdInUseError
from .._events import EventKind, JobEvent
from .._log import Event, logger
from .._options import QueueConfig
from ._dispatcher import Dispatcher
from ._executor import Executor
from ._heartbeat import HeartbeatThread
from ._loop_monitor import LoopMonitor
from ._notifier import Notifier
from ._periodic import Periodic
from ._process_pool import ProcessPool
from ._queues import QueueManager
from ._reaper import Reaper
from ._scheduler import enqueue_due_ticks
from ._services import Services

_FLUSH_TIMEOUT = 10.0
_LIVE: set[str] = set()  # incarnations of engines running in this process


class Runtime:
    def __init__(
        self,
        services: Services,
        *,
        queues: Mapping[str, QueueConfig] | None,
        open_backend: Callable[[], Backend],
        drain: bool = False,
    ) -> None:
        self._s = services
        self._drain = drain
        self._open_backend = open_backend
        self.queues = QueueManager(services.backend, queues,
                                   claim_ahead_under=services.settings.claim_ahead_under)
        self.pool = ProcessPool(
            services.settings.cpu_worker_count,
            preload=[d.import_path[0] for d in services.registry if d.mode is RunMode.PROCESS],
        )
        self.executor = Executor(services, self.queues, self.pool, self._slot_freed)
        self.dispatcher = Dispatcher(services, self.queues, self.executor, drain=drain)
        self.reaper = Reaper(services, self._heartbeat_health)
        self.monitor = LoopMonitor()
        self.notifier: Notifier | None = None
        self._heartbeat: HeartbeatThread | None = None
        self._stop_requested = asyncio.Event()
        self._immediate = asyncio.Event()
        self._fatal: BaseException | None = None
        self.started = asyncio.Event()

    # -- control from the engine ----------------------------------------------------------

    def request_stop(self, *, immediate: bool = False) -> None:
        self._stop_requested.set()
        if immediate:
            self._immediate.set()

    def notify_enqueued(self, queues: Sequence[str] | None) -> None:
        if self.queues.mark_maybe_more(queues):
            self.dispatcher.refresh_soon()
        self.dispatcher.wake()

    def cancel_local(self, job_id: int) -> None:
        self.executor.cancel(job_id)

    async def refresh_queues(self) -> None:
        await self.queues.refresh()
        self.dispatcher.wake()

    async def _enqueue_due_ticks(self) -> None:
        enqueued = await enqueue_due_ticks(self._s)
        if enqueued:
            self.notify_enqueued(sorted({job.queue for job in enqueued}))

    async def _watch_heartbeat(self) -> None:
        """Without its heartbeat an engine cannot claim (claims need a fresh one): stop instead."""
        while True:
            await asyncio.sleep(self._s.settings.heartbeat_interval)
            if self._heartbeat is not None and self._heartbeat.died:
                raise RuntimeError("the heartbeat thread died (see the log above)")

    async def _watch_claims(self) -> None:
        """Within a poll, the runs here learn that their job was canceled (asked for elsewhere)
        or taken away (rescued, replaced, canceled, retried or deleted), and stop."""
        claims = self.executor.undecided_claims()
        if not claims:
            return
        for claim in await self._s.backend.job_claims_to_stop(claims):
            if claim.held:
                self.executor.cancel(claim.id, claim.token)
            else:
                self.executor.let_go(claim.id, claim.token)

    def _heartbeat_health(self) -> float:
        return float("inf") if self._heartbeat is None else self._heartbeat.healthy_for()

    def _slot_freed(self, more: bool) -> None:
        if more or self._drain:
            self.dispatcher.wake()

    def _lost_id(self) -> None:
        """Called from the heartbeat thread: another incarnation holds our worker id."""
        def fail() -> None:
            self._fatal = EngineIdInUseError(
                f"engine id {self._s.engine_id!r} was taken over by another engine; this one stops"
            )
            self.request_stop(immediate=True)

        self._from_thread(fail)

    def _revived(self) -> None:
        """Called from the heartbeat thread: we had been declared dead and our jobs rescued.

        The jobs running here were claimed before that rescue (claims need a fresh
        heartbeat), so their claims are void: stop them; their outcomes will be refused.
        """
        self._from_thread(self.executor.interrupt_all)

    def _from_thread(self, callback: Callable[[], object]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            self._loop.call_soon_threadsafe(callback)

    # -- the run --------------------------------------------------------------------------

    async def run(self) -> int:
        """Work until stopped (or, draining, until nothing is left); the attempts started."""
        self._loop = asyncio.get_running_loop()
        await self._register()
        tasks: list[asyncio.Task[None]] = []
        try:
            await self._s.backend.job_rescue(engine_id=self._s.engine_id, retention=self._s.settings.retention,
                                             now=self._s.clock.for_database())
            if self._drain:
                await self.reaper.rescue()  # a workoff also runs the jobs of engines that died
            await self.queues.refresh()
            if self._s.backend.capabilities.shared:
                self._heartbeat = HeartbeatThread(self._s, self._open_backend, self.monitor, self._lost_id,
                                                  self._revived)
                self._heartbeat.start()
            tasks = self._start_loops()
            logger.info("engine %s started", self._s.engine_id,
                        extra={"event": Event.ENGINE_STARTED, "engine_id": self._s.engine_id})
            if self._s.events.wants(EventKind.ENGINE_STARTED):
                self._s.events.emit(JobEvent(kind=EventKind.ENGINE_STARTED, at=self._s.clock.now(),
                                             engine_id=self._s.engine_id))
            self.started.set()
            await self._wait_until_done(tasks)
        except BaseException:
            self._immediate.set()
            await _to_the_end(self._shutdown(tasks))
            raise
        await _to_the_end(self._shutdown(tasks))
        if self._fatal is not None:
            raise self._fatal
        return self.executor.attempts_started

    def _start_loops(self) -> list[asyncio.Task[None]]:
        settings = self._s.settings
        loops: list[tuple[str, Coroutine[Any, Any, None]]] = [
            ("dispatcher", self.dispatcher.run()),
            ("loop-monitor", self.monitor.run()),
            ("claim-watcher", Periodic("claim watcher", settings.poll_interval, self._watch_claims).run()),
        ]
        if not self._drain:
            loops.append(("reaper", Periodic("reaper", settings.reaper_interval, self.reaper.step).run()))
            loops.append(("scheduler", Periodic("scheduler", min(1.0, settings.poll_interval),
                                                self._enqueue_due_ticks).run()))
        if self._heartbeat is not None:
            loops.append(("heartbeat-watch", self._watch_heartbeat()))
        if self._s.backend.capabilities.supports_notify:
            self.notifier = Notifier(
                self._s,
                on_enqueued=self.notify_enqueued,
                on_cancel=self.cancel_local,
                on_queue_changed=self.dispatcher.refresh_soon,
            )
            loops.append(("notifier", self.notifier.run()))
        return [asyncio.create_task(coro, name=f"aiojobs-{name}") for name, coro in loops]

    async def _wait_until_done(self, tasks: list[asyncio.Task[None]]) -> None:
        stop = asyncio.ensure_future(self._stop_requested.wait())
        try:
            done, _ = await asyncio.wait([*tasks, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        dispatcher = tasks[0]
        for task in done:
            if task is stop or (task is dispatcher and self._drain and task.exception() is None):
                continue
            error = task.exception() or RuntimeError(f"{task.get_name()} ended unexpectedly")
            logger.critical("%s died; the engine stops: %r", task.get_name(), error, exc_info=error,
                            extra={"event": Event.ENGINE_CRASHED, "engine_id": self._s.engine_id})
            self._fatal = error
            self._immediate.set()

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        logger.info("engine %s stopping", self._s.engine_id,
                    extra={"event": Event.ENGINE_STOPPING, "engine_id": self._s.engine_id})
        self.dispatcher.stop()
        if tasks:
            await asyncio.wait([tasks[0]], timeout=5.0)
        self.executor.hand_back_parked()  # claimed ahead, not started: not worth the grace
        if self.executor.in_flight and not self._immediate.is_set():
            idle = asyncio.ensure_future(self.executor.wait_idle())
            immediate = asyncio.ensure_future(self._immediate.wait())
            await asyncio.wait({idle, immediate}, timeout=self._s.settings.shutdown_grace,
                               return_when=asyncio.FIRST_COMPLETED)
            idle.cancel()
            immediate.cancel()
        handed = await self.executor.hand_back_all()
        if handed:
            logger.warning("handed %d running job(s) back to waiting", handed,
                           extra={"event": Event.JOBS_HANDED_BACK, "engine_id": self._s.engine_id})
        await self.executor.close(_FLUSH_TIMEOUT)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._heartbeat is not None:
            await asyncio.to_thread(self._heartbeat.stop)
        try:
            await self._s.backend.engine_unregister(self._s.engine_id, self._s.registration.incarnation)
        except BackendError as exc:
            logger.warning("could not unregister engine %s: %s", self._s.engine_id, exc,
                           extra={"event": Event.COMPONENT_ERROR, "engine_id": self._s.engine_id})
        await self.pool.close()
        _LIVE.discard(self._s.registration.incarnation)
        logger.info("engine %s stopped", self._s.engine_id,
                    extra={"event": Event.ENGINE_STOPPED, "engine_id": self._s.engine_id})
        if self._s.events.wants(EventKind.ENGINE_STOPPED):
            self._s.events.emit(JobEvent(kind=EventKind.ENGINE_STOPPED, at=self._s.clock.now(),
                                         engine_id=self._s.engine_id))

    async def _register(self) -> None:
        """Register under the worker id, refusing an id that a live engine holds.

        An earlier life of this id on this host whose process is gone (a crash, then a restart
        by systemd or a container runtime) is taken over, and its orphaned jobs rescued at
        once, as soon as its heartbeat has been quiet for two intervals: a pid alone proves
        nothing across containers that share a host name, a silent heartbeat does.
        """
        registration = self._s.registration
        backend = self._s.backend
        settings = self._s.settings
        quiet = 2 * settings.heartbeat_interval
        deadline = asyncio.get_running_loop().time() + quiet + settings.heartbeat_interval
        while True:
            existing = await backend.engine_get(registration.id)
            takeover = None
            if (
                existing is not None
                and existing.host == registration.host
                and existing.incarnation not in _LIVE
                and (existing.pid == registration.pid or not _pid_alive(existing.pid))
            ):
                takeover = existing.incarnation
            if await backend.engine_register(
                registration, stale_after=settings.stale_after, takeover_incarnation=takeover,
                takeover_quiet=quiet, now=self._s.clock.for_database(),
            ):
                _LIVE.add(registration.incarnation)
                return
            if takeover is None or asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(settings.heartbeat_interval / 2)  # let the dead one's heartbeat age
        holder = await backend.engine_get(registration.id)
        where = f"pid {holder.pid} on {holder.host}, heartbeat at {holder.heartbeat_at:%H:%M:%S}" if holder else "?"
        raise EngineIdInUseError(
            f"engine id {registration.id!r} is in use by a live engine ({where}); give this "
            f"engine another worker_id, or wait {settings.stale_after:g}s after that one stopped"
        )


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
