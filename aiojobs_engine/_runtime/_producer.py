"""The producer: what this engine claims, and when.

Owns: the queues this engine works and their slots (a limit per queue that follows the
stored settings: concurrency, priority, paused, global cap), the wake-ups, the poll, and the
claim. It claims only free slots, so every claimed job starts at once: per queue, in
queue-priority order, all queues in one backend call per round. It takes each claimed job's
slot and hands the job to ``start_run``; the run gives the slot back through ``release``.

A round happens when something wakes it (a local enqueue, a notification, a freed slot of a
queue that may hold more, a settings change) or when the poll interval runs out, which is
what guarantees progress when every wake-up is lost. It claims nothing while the writer is
behind (as many writes wait as this engine has slots, at most a claim batch): slots free as
bodies end, before their outcomes are stored, so a slow database would otherwise let finished
jobs pile up; the end of each write wakes it. A poll held back so is owed to the next round.

Drain mode (``workoff``) ends after a round that began with nothing in flight and claimed
nothing. A failed claim backs off (an outage is logged once, by ``Outage``) and, before the
next claim, has recovery hand back any claim whose reply was lost with it.

May call: the backend (``queue_list``, ``job_claim``), the writer's ``behind``, and the
callables it is given (``start_run``, ``in_flight``, ``starts_at_once``, ``reconcile``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._backends._protocol import JobClaim, QueueDemand
from .._definitions import JobDefinition
from .._errors import BackendError, BackendUnavailableError
from .._log import Event, logger
from .._options import DEFAULT_CONCURRENCY, DEFAULT_PRIORITY, QueueConfig
from .._records import JobRecord, QueueRecord
from ._outage import Outage
from ._services import Services

_MAX_BACKOFF = 10.0


@dataclass(slots=True)
class _Queue:
    """One queue as this engine sees it: its stored settings and the slots held here."""

    name: str
    concurrency: int = DEFAULT_CONCURRENCY
    priority: int = DEFAULT_PRIORITY
    paused: bool = False
    global_concurrency: int | None = None
    rate_limit: tuple[int, float] | None = None
    concurrency_per_key: int | None = None
    rate_limit_per_key: tuple[int, float] | None = None
    held: int = 0  # slots held by runs
    maybe_more: bool = True  # the last claim filled its demand (or someone said more came)
    marks: int = 0  # times someone said "more may be waiting" (enqueues, notifications)
    marks_asked: int = 0  # ``marks`` when the last claim was asked for

    @property
    def free(self) -> int:
        return max(0, self.concurrency - self.held)


@dataclass(frozen=True, slots=True)
class ProducerLinks:
    """What the producer may call besides the backend."""

    start_run: Callable[[JobRecord], None]  # live a claimed job (its slot taken)
    in_flight: Callable[[], int]  # claims whose outcome is not stored yet
    starts_at_once: Callable[[JobDefinition], bool]  # may a claim start this job itself?
    writer_behind: Callable[[int], bool]  # the writer's backpressure signal
    reconcile: Callable[[], Awaitable[None]]  # hand back claims whose reply was lost


class Producer:
    def __init__(self, services: Services, configured: Mapping[str, QueueConfig] | None, links: ProducerLinks,
                 outage: Outage, *, drain: bool) -> None:
        self._s = services
        self._configured = configured  # None: every queue found in the database
        self._links = links
        self._outage = outage
        self._drain = drain
        self._queues: dict[str, _Queue] = {name: _Queue(name) for name in configured or ()}
        self._wake = asyncio.Event()
        self._stopping = False
        self._stop_asked = asyncio.Event()
        self._refresh_now = False
        self._reconcile = False
        self._poll_owed = False
        self._start_now: list[str] = []
        self._start_now_for = -1  # registry size when _start_now was computed
        self._asked_database = False  # this round reached the database
        self._window_waits: dict[str, asyncio.TimerHandle] = {}  # rate-limited queues: claim when they open
        self.rounds = 0
        settings = services.settings
        # Claim only while this engine's heartbeat is fresh enough that no other engine can
        # have declared it dead: a margin of one heartbeat below stale_after. A database no
        # other process can open needs no such proof.
        self._guard: dict[str, Any] = {
            "incarnation": services.registration.incarnation,
            "fresh_within": settings.stale_after - settings.heartbeat_interval,
        } if services.backend.capabilities.shared else {}

    # -- wake-ups and changes, from anywhere on the loop -------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def jobs_enqueued(self, queues: Sequence[str] | None) -> None:
        """Jobs were enqueued to these queues (None: to some queue): claim now."""
        for queue in self._queues.values():
            if queues is None or queue.name in queues:
                queue.maybe_more = True
                queue.marks += 1
        if self._configured is None and queues is not None and any(q not in self._queues for q in queues):
            self._refresh_now = True  # a queue new to this engine: read its settings first
        self._wake.set()

    def settings_changed(self) -> None:
        """Queue settings changed elsewhere: re-read them before the next claim."""
        self._refresh_now = True
        self._wake.set()

    def queue_changed(self, record: QueueRecord) -> None:
        """A queue's settings, just stored by this process: follow them now."""
        self._update(record)
        self._wake.set()

    def release(self, queue: str) -> None:
        """A run gives its queue slot back: claim again if the queue may hold more."""
        entry = self._queues[queue]
        entry.held -= 1
        if (entry.maybe_more and not entry.paused) or self._drain:
            self._wake.set()

    def capped(self, queue: str) -> bool:
        """Does a global cap count this queue's claims across engines?"""
        entry = self._queues.get(queue)
        return entry is not None and entry.global_concurrency is not None

    def key_freed(self, queue: str) -> None:
        """A keyed job's outcome is stored: its key has room again, so a claim that left that
        key's jobs waiting may take one now (the database counts a job until its outcome is
        stored, and this engine's own commit is no change its watch sees)."""
        entry = self._queues.get(queue)
        if entry is not None and entry.concurrency_per_key is not None:
            self.jobs_enqueued([queue])

    def stop(self) -> None:
        for handle in self._window_waits.values():
            handle.cancel()
        self._window_waits.clear()
        self._stopping = True
        self._stop_asked.set()
        self._wake.set()

    # -- settings -------------------------------------------------------------------------------

    async def refresh(self) -> None:
        for record in await self._s.backend.queue_list():
            self._update(record)
        self._asked_database = True

    def _update(self, record: QueueRecord) -> None:
        queue = self._queues.get(record.name)
        if queue is None:
            if self._configured is not None:
                return
            queue = self._queues[record.name] = _Queue(record.name)
        if record.concurrency > queue.concurrency or (queue.paused and not record.paused):
            queue.maybe_more = True
        queue.concurrency = record.concurrency
        queue.priority = record.priority
        queue.paused = record.paused
        queue.global_concurrency = record.global_concurrency
        limits = (record.rate_limit, record.concurrency_per_key, record.rate_limit_per_key)
        if limits != (queue.rate_limit, queue.concurrency_per_key, queue.rate_limit_per_key):
            self._forget_window(record.name)  # a wait worked out under the old limits no longer holds
            queue.maybe_more = True
        queue.rate_limit, queue.concurrency_per_key, queue.rate_limit_per_key = limits

    # -- the loop -----------------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        poll = self._s.settings.poll_interval
        next_poll = loop.time()
        failures = 0
        while not self._stopping:
            polling = self._drain or self._poll_owed or loop.time() >= next_poll
            self._wake.clear()
            # Draining ends after a round that began with nothing in flight and claimed
            # nothing: a job ending during the claim may have freed a slot or come due again.
            idle_before = self._links.in_flight() == 0
            self._asked_database = False
            try:
                if self._reconcile:
                    await self._links.reconcile()
                    self._reconcile = False
                if self._refresh_now or (polling and loop.time() >= next_poll):
                    self._refresh_now = False
                    await self.refresh()
                    next_poll = loop.time() + poll
                claimed = await self._claim(include_idle=polling)
            except BackendError as exc:
                failures += 1
                self._reconcile = True  # a claim may have committed although its reply was lost
                outage = None
                if isinstance(exc, BackendUnavailableError):
                    outage = self._outage.failed("claims", exc)
                else:
                    logger.warning("producer: the database refused a claim: %s", exc,
                                   extra={"event": Event.COMPONENT_ERROR, "component": "producer"})
                await self._pause(min(poll * failures, _MAX_BACKOFF), outage)  # not cut short by wake-ups
                continue
            failures = 0
            if self._asked_database:  # a whole round went through: any outage is over
                self._outage.succeeded("claims")
            if self._drain and not claimed and idle_before and not self._waiting_for_a_window():
                return
            if claimed and self._demands(include_idle=False):
                continue  # full batches and free slots: claim again at once
            await self._sleep(poll if self._drain else max(0.0, next_poll - loop.time()))

    async def _claim(self, *, include_idle: bool) -> int:
        settings = self._s.settings
        if self._links.writer_behind(min(settings.claim_batch_size, max(1, self._slots()))):
            # The end of the write in flight wakes this loop. A poll held back is owed: the
            # next claim asks every queue (else a queue only a poll asks, say one whose delayed
            # job came due, would wait for a poll that falls where the writer is not behind).
            self._poll_owed = self._poll_owed or include_idle
            return 0
        if include_idle:
            self._poll_owed = False
        demands = self._demands(include_idle=include_idle)
        if not demands:
            return 0
        self.rounds += 1
        claim = JobClaim(engine_id=self._s.engine_id, demands=demands, now=self._s.clock.for_database(),
                         start_now=self._names_started_by_claim(), **self._guard)
        records = await self._s.backend.job_claim(claim)
        self._asked_database = True
        self._note_claimed(demands, records, claim.unfinished)
        for record in records:
            self._take_slot(record.queue)
            self._links.start_run(record)
        self._wake_when_windows_open(claim.rate_waits)
        return len(records)

    def _wake_when_windows_open(self, waits: Mapping[str, float]) -> None:
        """A rate-limited queue whose window held jobs back: claim for it again as soon as the
        window allows a start (not a poll later). The earliest wait of a queue wins."""
        loop = asyncio.get_running_loop()
        for queue, wait in waits.items():
            pending = self._window_waits.get(queue)
            if pending is not None and pending.when() <= loop.time() + wait:
                continue
            if pending is not None:
                pending.cancel()
            self._window_waits[queue] = loop.call_later(wait, self._window_opened, queue)

    def _waiting_for_a_window(self) -> bool:
        """Does a window about to open still hold due jobs back? (A drain waits for it, unless
        the clock is a test's: frozen time never opens a window.)"""
        return bool(self._window_waits) and self._s.clock.for_database() is None

    def _forget_window(self, queue: str) -> None:
        pending = self._window_waits.pop(queue, None)
        if pending is not None:
            pending.cancel()

    def _window_opened(self, queue: str) -> None:
        self._window_waits.pop(queue, None)
        self.jobs_enqueued([queue])

    def _demands(self, *, include_idle: bool) -> list[QueueDemand]:
        """What to claim now, in queue-priority order: the free slots of queues not paused.

        ``include_idle`` also asks queues whose last claim came back short (a poll); without
        it only queues that may hold more are asked (a wake-up after a slot freed).
        """
        batch = self._s.settings.claim_batch_size
        demands = []
        for q in sorted(self._queues.values(), key=lambda q: (q.priority, q.name)):
            if q.paused or not (include_idle or q.maybe_more):
                continue
            limit = min(q.free, batch)
            if limit > 0:
                q.marks_asked = q.marks
                demands.append(QueueDemand(q.name, limit, q.global_concurrency, q.rate_limit,
                                           q.concurrency_per_key, q.rate_limit_per_key))
        return demands

    def _note_claimed(self, demands: Sequence[QueueDemand], records: Sequence[JobRecord],
                      unfinished: set[str]) -> None:
        claimed: dict[str, int] = {}
        for record in records:
            claimed[record.queue] = claimed.get(record.queue, 0) + 1
        for demand in demands:
            got = claimed.get(demand.queue, 0)
            queue = self._queues[demand.queue]
            # A short claim means the queue ran dry, unless a global cap or a key's limit cut
            # it short: then room comes back as jobs of the queue end, and each of this
            # engine's own ends is a moment to try again (an end elsewhere is noticed by the
            # next poll, or, for a keyed job on PostgreSQL, announced). And a job enqueued
            # while the claim was under way may have missed it.
            queue.maybe_more = got >= demand.limit or queue.marks != queue.marks_asked or (
                (demand.global_limit is not None or demand.per_key) and (got > 0 or queue.held > 0))
            if demand.queue in unfinished:  # it stopped before it had looked at every due job
                queue.maybe_more = True
                self._wake.set()

    def _take_slot(self, queue: str) -> None:
        entry = self._queues.get(queue)
        if entry is None:  # claimed just after a configuration change: count it anyway
            entry = self._queues[queue] = _Queue(queue)
        entry.held += 1

    def _slots(self) -> int:
        """How many jobs this engine may run at once, over its queues that are not paused."""
        return sum(q.concurrency for q in self._queues.values() if not q.paused)

    def _names_started_by_claim(self) -> list[str]:
        """The jobs a claim may start itself (recomputed when jobs are declared)."""
        registry = self._s.registry
        if self._start_now_for != len(registry):
            self._start_now = [d.name for d in registry if self._links.starts_at_once(d)]
            self._start_now_for = len(registry)
        return self._start_now

    async def _sleep(self, seconds: float) -> None:
        if self._stopping:
            return
        # asyncio.timeout, not wait_for: no task of its own per wait.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _pause(self, seconds: float, outage: int | None) -> None:
        """A back-off that wake-ups do not cut short: only a stop, or the end of ``outage``."""
        if not self._stopping:
            await self._outage.pause(seconds, after=outage, unless=self._stop_asked)
