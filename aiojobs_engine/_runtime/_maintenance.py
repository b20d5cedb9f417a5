"""Maintenance: the heartbeat that proves this engine alive, and the pruning of finished jobs.

Owns: the heartbeat thread (``_heartbeat``: its own loop and connection, so a job that blocks
the engine's loop does not get its engine declared dead) and the loop monitor it reads; the
check that the thread still lives (an engine without a heartbeat cannot claim, so it stops
instead); and pruning: finished jobs past their retention, deleted in bounded batches every
``PRUNE_EVERY`` seconds, so pruning never holds the table for long.

May call: the backend (``job_prune``; the heartbeat thread opens a backend of its own), and
the callbacks it is given for a lost worker id and a revival (the runtime's, recovery's).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from .._backends._protocol import Backend
from .._log import Event, logger
from ._heartbeat import HeartbeatThread, LoopMonitor
from ._outage import Outage
from ._periodic import Periodic
from ._runner import Runner
from ._services import Services

PRUNE_EVERY = 60.0  # seconds between prune passes
_MAX_BATCHES_PER_PASS = 20


class Maintenance:
    def __init__(self, services: Services, runner: Runner, outage: Outage) -> None:
        self._s = services
        self._outage = outage
        self.monitor = LoopMonitor(runner.jobs_of_task)
        self._heartbeat: HeartbeatThread | None = None
        self.pruned = 0

    # -- the heartbeat ----------------------------------------------------------------------------

    def start_heartbeat(self, open_backend: Callable[[], Backend], *, on_lost: Callable[[], None],
                        on_revived: Callable[[], None]) -> None:
        """Beat from a thread of its own (only where other processes share the database)."""
        if not self._s.backend.capabilities.shared:
            return
        self._heartbeat = HeartbeatThread(self._s, open_backend, self.monitor, on_lost, on_revived, self._outage)
        self._heartbeat.start()

    def loops(self, *, drain: bool) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        """Its loops, for the runtime's task group: the loop monitor, the heartbeat's watch,
        and (when not draining) the pruner."""
        loops: list[tuple[str, Coroutine[Any, Any, None]]] = [("loop-monitor", self.monitor.run())]
        if self._heartbeat is not None:
            loops.append(("heartbeat-watch", self.watch_heartbeat()))
        if not drain:
            loops.append(("pruner", Periodic("pruner", PRUNE_EVERY, self.prune, self._outage).run()))
        return loops

    def trusted_for(self) -> float:
        """Seconds this engine's heartbeats have been succeeding (infinite without a heartbeat)."""
        return float("inf") if self._heartbeat is None else self._heartbeat.healthy_for()

    async def watch_heartbeat(self) -> None:
        """Without its heartbeat an engine cannot claim (claims need a fresh one): stop instead."""
        while True:
            await asyncio.sleep(self._s.settings.heartbeat_interval)
            if self._heartbeat is not None and self._heartbeat.died:
                raise RuntimeError("the heartbeat thread died (see the log above)")

    async def stop_heartbeat(self) -> None:
        if self._heartbeat is not None:
            await asyncio.to_thread(self._heartbeat.stop)

    # -- pruning ------------------------------------------------------------------------------------

    async def prune(self) -> int:
        settings = self._s.settings
        total = 0
        for _ in range(_MAX_BATCHES_PER_PASS):
            deleted = await self._s.backend.job_prune(limit=settings.prune_batch_size, now=self._s.clock.for_database())
            total += deleted
            if deleted < settings.prune_batch_size:
                break
            await asyncio.sleep(0)  # let other work in between batches
        if total:
            self.pruned += total
            logger.info("pruned %d finished job(s)", total, extra={"event": Event.JOBS_PRUNED, "count": total})
        return total
