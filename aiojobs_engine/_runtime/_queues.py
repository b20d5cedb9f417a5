"""The queue manager: which queues this engine works, their limits, and their free slots.

Settings live in the database (every engine follows them); this engine keeps a copy,
refreshed each poll and at once after a local change. Each queue's concurrency is a
counter of slots rather than an ``asyncio.Semaphore`` because the limit can change at run
time and the dispatcher claims exactly as many jobs as there are free slots.
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
    running: int = 0
    maybe_more: bool = True  # the last claim filled its demand: more may be waiting

    @property
    def free(self) -> int:
        return max(0, self.concurrency - self.running)


class QueueManager:
    """Slots per queue; ``configured`` None means every queue found in the database."""

    def __init__(self, backend: Backend, configured: Mapping[str, QueueConfig] | None) -> None:
        self._backend = backend
        self._configured = configured
        self._queues: dict[str, _Queue] = {name: _Queue(name) for name in configured or ()}

    @property
    def works_every_queue(self) -> bool:
        return self._configured is None

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
        return [
            QueueDemand(q.name, min(q.free, batch_size), q.global_concurrency)
            for q in ordered
            if not q.paused and q.free > 0 and (include_idle or q.maybe_more)
        ]

    def record_claim(self, demands: Sequence[QueueDemand], claimed_per_queue: Mapping[str, int]) -> None:
        for demand in demands:
            got = claimed_per_queue.get(demand.queue, 0)
            self._queues[demand.queue].maybe_more = got >= demand.limit

    def acquire(self, queue: str) -> None:
        entry = self._queues.get(queue)
        if entry is None:  # claimed just after a configuration change: count it anyway
            entry = self._queues[queue] = _Queue(queue)
        entry.running += 1

    def release(self, queue: str) -> bool:
        """Free a slot; True if the dispatcher should claim again for this queue now."""
        entry = self._queues[queue]
        entry.running -= 1
        return entry.maybe_more and not entry.paused

    def mark_maybe_more(self, queues: Sequence[str] | None) -> bool:
        """Someone enqueued to these queues (None: to any). True if one is new to this engine
        and should be worked: its stored settings must be read before claiming from it."""
        for queue in self._queues.values():
            if queues is None or queue.name in queues:
                queue.maybe_more = True
        return self.works_every_queue and queues is not None and any(q not in self._queues for q in queues)

    def running(self) -> int:
        return sum(q.running for q in self._queues.values())

    def snapshot(self) -> list[QueueRecord]:
        return [
            QueueRecord(name=q.name, concurrency=q.concurrency, priority=q.priority, paused=q.paused,
                        global_concurrency=q.global_concurrency)
            for q in sorted(self._queues.values(), key=lambda q: (q.priority, q.name))
        ]
