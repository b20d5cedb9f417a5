"""The reaper: rescues the jobs of dead engines and prunes finished jobs.

Rescue: engines whose heartbeat is older than ``stale_after`` are deleted, and every job
they (or engines with no row at all) held goes back to ``waiting`` — or to ``failed`` if
its last attempt was the one that died with its engine. Any live engine's reaper may do
it; the statement is idempotent, so several reapers racing do no harm.

Prune: finished jobs past their retention are deleted in bounded batches, so pruning never
holds the table for long.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .._events import EventKind, JobEvent
from .._log import Event, logger
from ._services import Services

PRUNE_EVERY = 60.0  # seconds between prune passes
_MAX_BATCHES_PER_PASS = 20


class Reaper:
    """``trusted_for()``: seconds this engine's own view of the database has been sound
    (its heartbeats succeeding); None when there is no heartbeat to go by."""

    def __init__(self, services: Services, trusted_for: Callable[[], float] | None = None) -> None:
        self._s = services
        self._trusted_for = trusted_for
        self._next_prune = 0.0
        self.rescued = 0
        self.pruned = 0

    async def step(self) -> None:
        await self.rescue()
        loop = asyncio.get_running_loop()
        if loop.time() >= self._next_prune:
            self._next_prune = loop.time() + PRUNE_EVERY
            await self.prune()

    async def rescue(self) -> None:
        if not self._s.backend.capabilities.shared:
            return  # no other process can use this database: there is no other engine to rescue
        if self._trusted_for is not None and self._trusted_for() < self._s.settings.stale_after:
            # This engine has just failed to reach the database itself (an outage, a lost
            # connection). Every engine's heartbeat may look stale now for the same reason:
            # judging them before they had `stale_after` to beat again would rescue the jobs
            # of live engines. Rescuing waits; crashed engines are rescued a little later.
            return
        result = await self._s.backend.job_rescue(
            retention=self._s.settings.retention, stale_after=self._s.settings.stale_after,
            now=self._s.clock.for_database(),
        )
        jobs = result.retried + result.failed
        if self._s.events.wants(EventKind.JOB_RESCUED):
            at = self._s.clock.now()
            for job in jobs:
                self._s.events.emit(JobEvent(kind=EventKind.JOB_RESCUED, at=at, engine_id=self._s.engine_id, job=job))
        if result.dead_engines or jobs:
            self.rescued += len(jobs)
            logger.warning(
                "rescued %d job(s) from dead engine(s) %s: %d back to waiting, %d failed for good",
                len(jobs), ", ".join(result.dead_engines) or "(none registered)",
                len(result.retried), len(result.failed),
                extra={"event": Event.JOBS_RESCUED, "engines": result.dead_engines,
                       "job_ids": [j.id for j in jobs]},
            )

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
