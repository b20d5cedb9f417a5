"""The queue manager: which queues this engine works, their limits, and their free slots.

Settings live in the database (every engine follows them); this engine keeps a copy,
refreshed each poll and at once after a local change. Each queue's concurrency is a
counter of slots rather than an ``asyncio.Semaphore`` because the limit can change at run
time and the dispatcher claims exactly as many jobs as there are free slots.

Claiming ahead (opt-in): while a queue's attempts here are short on average (under the
engine's ``claim_ahead_under``), the dispatcher may also claim beyond the free slots: as
many jobs as the queue's slots can start within ``claim_ahead_under`` at the recent pace,
at least the queue's concurrency and at most one claim batch. Those claims are *parked* in the executor
and start the moment a slot frees, so a busy queue of quick jobs never waits a claim's
round trip between two batches, and jobs that take no time are claimed a full batch at a
time whatever the concurrency. A queue with a global cap never claims ahead (the cap
counts every claim, parked or not). Off by default: a parked claim needs a start write of
its own (its attempt must count only once it runs), a third row update per job that costs
more than the claim round trip it saves, as measured; the claim of free slots starts them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .._backends._protocol import Backend, QueueDemand
from .._options import DEFAULT_CONCURRENCY, DEFAULT_PRIORITY, QueueConfig
from .._records import QueueRecord


@dataclass(slots=True)
class _Queue:
    name: str
    concurrency: int = DEFAULT_CONCURRENCY
    priority: int = DEFAULT_PRIORITY
    paused: bool = False
    global_concurrency: int | None = None
    running: int = 0  # claims holding one of its slots
    parked: int = 0  # claims waiting here for a slot
    maybe_more: bool = True  # the last claim filled its demand: more may be waiting
    marks: int = 0  # how many times someone said "more may be waiting" (enqueues, notifications)
    marks_asked: int = 0  # ``marks`` when the last claim was asked for
    recent_seconds: float | None = None  # moving average of its attempts' durations here

    @property
    def free(self) -> int:
        return max(0, self.concurrency - self.running)

    def claimable(self, batch_size: int, ahead_under: float) -> int:
        """Free slots, plus room to park claims while the queue's jobs are quick."""
        ahead = 0
        recent = self.recent_seconds
        if ahead_under > 0 and self.global_concurrency is None and recent is not None and recent < ahead_under:
            # Park as many claims as the queue's slots can start within ``ahead_under``, at
            # least one batch of its concurrency and at most one claim batch: for jobs that
            # take no time, a claim of a full batch whatever the concurrency (the claims,
            # not the slots, are what such jobs wait for).
            depth = int(self.concurrency * ahead_under / recent) if recent > 0 else batch_size
            target = min(max(depth, self.concurrency), batch_size)
            # Top up only once half of it has started: a claim of many rows costs about what
            # a claim of a few does, so a claim per freed slot would mostly pay overhead.
            ahead = target - self.parked if self.parked <= target // 2 else 0
        return min(self.free + ahead, batch_size)


class QueueManager:
    """Slots per queue; ``configured`` None means every queue found in the database."""

    def __init__(self, backend: Backend, configured: Mapping[str, QueueConfig] | None, *,
                 claim_ahead_under: float = 0.0) -> None:
        self._backend = backend
        self._configured = configured
        self._ahead_under = claim_ahead_under
        self._queues: dict[str, _Queue] = {name: _Queue(name) for name in configured or ()}

    @property
    def works_every_queue(self) -> bool:
        return self._configured is None

    @property
    def slots(self) -> int:
        """How many jobs this engine may run at once, over the queues it works and are not paused."""
        return sum(q.concurrency for q in self._queues.values() if not q.paused)

    @property
    def names(self) -> list[str] | None:
        return None if self._configured is None else list(self._configured)

    async def refresh(self) -> None:
        for record in await self._backend.queue_list():
            self.update(record)

    def update(self, record: QueueRecord) -> None:
        queue = self._queues.get(record.name)
        if queue is None:
            if not self.works_every_queue:
                return
            queue = self._queues[record.name] = _Queue(record.name)
        grew = record.concurrency > queue.concurrency or (queue.paused and not record.paused)
        queue.concurrency = record.concurrency
        queue.priority = record.priority
        queue.paused = record.paused
        queue.global_concurrency = record.global_concurrency
        if grew:
            queue.maybe_more = True

    def demands(self, batch_size: int, *, include_idle: bool) -> list[QueueDemand]:
        """What to claim now, in queue-priority order: free slots of queues not paused.

        ``include_idle`` also asks queues whose last claim came back short (a poll); without
        it only queues that may hold more work are asked (a wake-up after a slot freed).
        """
        ordered = sorted(self._queues.values(), key=lambda q: (q.priority, q.name))
        demands = []
        for q in ordered:
            if q.paused or not (include_idle or q.maybe_more):
                continue
            limit = q.claimable(batch_size, self._ahead_under)
            if limit > 0:
                q.marks_asked = q.marks
                # Only claims that get a slot now start now; those parked ahead stay claimed.
                demands.append(QueueDemand(q.name, limit, q.global_concurrency, start=min(q.free, limit)))
        return demands

    def record_claim(self, demands: Sequence[QueueDemand], claimed_per_queue: Mapping[str, int]) -> None:
        for demand in demands:
            got = claimed_per_queue.get(demand.queue, 0)
            queue = self._queues[demand.queue]
            # A short claim means the queue ran dry, unless a global cap cut it short: then
            # room comes back as jobs of the queue end, and each of this engine's own ends is
            # a moment to try again (an end elsewhere is noticed by the next poll).
            # And a job enqueued while the claim was under way may have missed it.
            queue.maybe_more = got >= demand.limit or queue.marks != queue.marks_asked or (
                demand.global_limit is not None and (got > 0 or queue.running > 0))

    def capped(self, queue: str) -> bool:
        """Does a global cap count this queue's claims across engines?"""
        entry = self._queues.get(queue)
        return entry is not None and entry.global_concurrency is not None

    def acquire(self, queue: str) -> bool:
        """Take a slot for a new claim; False: none is free, the claim is parked."""
        entry = self._queues.get(queue)
        if entry is None:  # claimed just after a configuration change: count it anyway
            entry = self._queues[queue] = _Queue(queue)
        if entry.running >= entry.concurrency:
            entry.parked += 1
            return False
        entry.running += 1
        return True

    def take_parked(self, queue: str) -> bool:
        """Give a free slot to one of the queue's parked claims; False if none can have one."""
        entry = self._queues[queue]
        if entry.parked <= 0 or entry.running >= entry.concurrency:
            return False
        entry.parked -= 1
        entry.running += 1
        return True

    def unpark(self, queue: str) -> None:
        """A parked claim leaves without a slot (it is handed back or canceled)."""
        self._queues[queue].parked -= 1

    def observe(self, queue: str, seconds: float) -> None:
        """An attempt of this queue took ``seconds`` here (what claiming ahead goes by)."""
        entry = self._queues.get(queue)
        if entry is not None:
            last = entry.recent_seconds
            entry.recent_seconds = seconds if last is None else 0.8 * last + 0.2 * seconds

    def release(self, queue: str) -> bool:
        """Free a slot; True if the dispatcher should claim again for this queue now (the
        executor first gives the slot to a parked claim, if any)."""
        entry = self._queues[queue]
        entry.running -= 1
        return entry.maybe_more and not entry.paused

    def mark_maybe_more(self, queues: Sequence[str] | None) -> bool:
        """Someone enqueued to these queues (None: to any). True if one is new to this engine
        and should be worked: its stored settings must be read before claiming from it."""
        for queue in self._queues.values():
            if queues is None or queue.name in queues:
                queue.maybe_more = True
                queue.marks += 1
        return self.works_every_queue and queues is not None and any(q not in self._queues for q in queues)

    def snapshot(self) -> list[QueueRecord]:
        return [
            QueueRecord(name=q.name, concurrency=q.concurrency, priority=q.priority, paused=q.paused,
                        global_concurrency=q.global_concurrency)
            for q in sorted(self._queues.values(), key=lambda q: (q.priority, q.name))
        ]
