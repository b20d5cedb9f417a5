"""The dispatcher: claims runnable jobs in batches and hands them to the executor.

It claims only as many jobs as there are free slots (so a claimed job starts at once), per
queue and in queue-priority order, in one backend call per round. A round happens when
something wakes it — a local enqueue, a notification from the database, a freed slot of a
queue that may hold more — or when the poll interval runs out, which is what guarantees
progress when every wake-up is lost. It claims nothing while a round of outcomes (as many as
the engine's slots, at most a claim batch) waits behind the write in flight: slots free as
bodies end, before their outcomes are stored, so a slow writer would otherwise let finished
jobs pile up; the write's end wakes it.

In drain mode (``workoff``) it stops once a round claims nothing and nothing is running.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

from .._backends._protocol import JobClaim, JobOutcome
from .._errors import BackendError
from .._log import Event, logger
from .._records import JobState
from ._executor import Executor
from ._queues import QueueManager
from ._services import Services

_MAX_BACKOFF = 10.0


class Dispatcher:
    def __init__(self, services: Services, queues: QueueManager, executor: Executor, *, drain: bool) -> None:
        self._s = services
        self._queues = queues
        self._executor = executor
        self._drain = drain
        self._wake = asyncio.Event()
        self._stopping = False
        self._refresh_now = False
        self._reconcile = False
        self._start_now_names: list[str] = []
        self._start_now_for = -1
        self._poll_owed = False  # a poll round was held back by the writer's backlog
        self.rounds = 0
        settings = services.settings
        # Claim only while this engine's heartbeat is fresh enough that no other engine can
        # have declared it dead: a margin of one heartbeat below stale_after. A database no
        # other process can open needs no such proof.
        self._guard: dict[str, Any] = {
            "incarnation": services.registration.incarnation,
            "fresh_within": settings.stale_after - settings.heartbeat_interval,
        } if services.backend.capabilities.shared else {}

    def wake(self) -> None:
        self._wake.set()

    def refresh_soon(self) -> None:
        """Queue settings changed elsewhere: re-read them on the next round."""
        self._refresh_now = True
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        poll = self._s.settings.poll_interval
        next_poll = loop.time()
        failures = 0
        while not self._stopping:
            polling = self._drain or self._poll_owed or loop.time() >= next_poll
            self._wake.clear()
            # Draining ends after a round that started with nothing running and claimed
            # nothing: a job finishing during the claim may have freed a slot or come due again.
            idle_before = self._executor.in_flight == 0
            try:
                if self._reconcile:
                    await self._hand_back_lost_claims()
                if self._refresh_now or (polling and loop.time() >= next_poll):
                    self._refresh_now = False
                    await self._queues.refresh()
                    next_poll = loop.time() + poll
                claimed = await self._claim(include_idle=polling)
            except BackendError as exc:
                failures += 1
                self._reconcile = True  # a claim may have committed although its reply was lost
                delay = min(poll * failures, _MAX_BACKOFF)
                logger.warning("dispatcher: database error (%s); retrying in %.1fs", exc, delay,
                               extra={"event": Event.BACKEND_RETRY, "component": "dispatcher"})
                await self._sleep(delay)
                continue
            failures = 0
            if self._drain and not claimed and idle_before:
                return
            if claimed and self._queues.demands(self._s.settings.claim_batch_size, include_idle=False):
                continue  # full batches and free slots: claim again at once
            await self._sleep(max(0.0, next_poll - loop.time()) if not self._drain else poll)

    async def _claim(self, *, include_idle: bool) -> int:
        batch_size = self._s.settings.claim_batch_size
        if self._executor.write_backlog >= min(batch_size, max(1, self._queues.slots)):
            # A round of outcomes (as many as this engine's slots, at most a claim batch)
            # already waits behind the write in flight: the writer is behind (a slow
            # database, or the first writes of a burst, which prepare statements). Claiming
            # more would only pile finished jobs up in memory, hundreds to thousands of them
            # (measured), and hand the database more than it keeps up with. The end of the
            # write in flight wakes this loop. A poll held back is owed: the next claim asks
            # every queue (else a queue only a poll asks, say one whose delayed job came due,
            # would wait for a poll that falls where no write is behind).
            self._poll_owed = self._poll_owed or include_idle
            return 0
        if include_idle:
            self._poll_owed = False
        demands = self._queues.demands(batch_size, include_idle=include_idle)
        if not demands:
            return 0
        self.rounds += 1
        records = await self._s.backend.job_claim(JobClaim(
            engine_id=self._s.engine_id, demands=demands, now=self._s.clock.for_database(),
            start_now=self._start_now(), **self._guard,
        ))
        self._queues.record_claim(demands, Counter(r.queue for r in records))
        for record in records:
            self._executor.submit(record)
        return len(records)

    def _start_now(self) -> list[str]:
        """The jobs a claim may start at once (recomputed when jobs are declared)."""
        registry = self._s.registry
        if self._start_now_for != len(registry):
            self._start_now_names = [d.name for d in registry if self._executor.starts_at_once(d)]
            self._start_now_for = len(registry)
        return self._start_now_names

    async def _hand_back_lost_claims(self) -> None:
        """Jobs this engine holds in the database but runs nowhere (a claim whose reply was
        lost with its connection) go back to waiting at once. Runs between claims, so no
        claim of ours is in flight."""
        known = self._executor.known_tokens()
        lost = [h for h in await self._s.backend.job_held(self._s.engine_id) if h.token not in known]
        self._reconcile = False
        if not lost:
            return
        await self._s.backend.job_finish_many([
            JobOutcome(id=h.id, token=h.token, from_state=h.state, state=JobState.WAITING, delay=0.0,
                       give_back_attempt=h.state is JobState.RUNNING)
            for h in lost
        ], retention=self._s.settings.retention, now=self._s.clock.for_database())
        logger.warning("handed back %d job(s) whose claim this engine had lost track of", len(lost),
                       extra={"event": Event.JOBS_HANDED_BACK, "job_ids": [h.id for h in lost]})

    async def _sleep(self, seconds: float) -> None:
        if self._stopping:
            return
        # asyncio.timeout, not wait_for: no task of its own per wait (a wake-up reaches the
        # claim a loop iteration or two sooner, which an idle engine's pickup pays).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
