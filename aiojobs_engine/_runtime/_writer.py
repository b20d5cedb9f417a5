"""The writer: starts and outcomes of attempts, many at a time, in one statement per batch.

Owns: the writes waiting to go, their batching, their retries, and its backpressure signal.
A run asks for a write and awaits its own future: ``start`` settles with the started job
(None if the claim was taken away meanwhile), ``finish`` with whether the outcome was
accepted. Writes asked for while one is in flight (or in the same loop iteration) go
together in the next batch: no latency when idle, one round trip for many under load.

Backpressure: ``behind(limit)`` says that ``limit`` writes or more wait behind the one in
flight, and ``on_written`` is called at the end of each batch; the producer claims nothing
while the writer is behind (a slow database would otherwise let finished jobs pile up in
memory), and is woken by the end of the write.

Failures:
- the database cannot be reached (``BackendUnavailableError``): the batch is retried with
  backoff until it goes through, or until ``close()``'s deadline; an outcome is never
  dropped because the database blinked (the outage is logged once, by ``Outage``);
- the database refuses the batch (any other ``BackendError``): one bad write must not hold
  the others back, so the batch is split and retried in halves until the bad one is alone;
  its caller gets the error, everyone else their result.

May call: the backend's ``job_write_many``; ``Outage``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import cast

from .._backends._protocol import JobOutcome, JobStart, StartedJob
from .._errors import BackendError, BackendUnavailableError
from ._outage import Outage
from ._services import Services

Write = JobStart | JobOutcome
Reply = StartedJob | bool | None
_Pending = list[tuple[Write, "asyncio.Future[Reply]"]]

MAX_BATCH = 500
_MAX_BACKOFF = 5.0


class Writer:
    def __init__(self, services: Services, outage: Outage, on_written: Callable[[], None]) -> None:
        self._s = services
        self._outage = outage
        self._on_written = on_written
        self._pending: _Pending = []
        self._task: asyncio.Task[None] | None = None
        self._writing = False
        self._give_up_at: float | None = None  # set by close(): retry until then
        self._closed = False

    # -- what runs ask for ------------------------------------------------------------------

    def start(self, job_id: int, token: str) -> asyncio.Future[StartedJob | None]:
        """Mark a claimed job running (its attempt counts from now)."""
        return cast("asyncio.Future[StartedJob | None]", self._submit(JobStart(job_id, token)))

    def finish(self, outcome: JobOutcome) -> asyncio.Future[bool]:
        """Record an attempt's outcome; True if the database accepted it (the claim still held)."""
        return cast("asyncio.Future[bool]", self._submit(outcome))

    def behind(self, limit: int) -> bool:
        """Do ``limit`` writes or more wait behind the write in flight?"""
        return self._writing and len(self._pending) >= limit

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _submit(self, write: Write) -> asyncio.Future[Reply]:
        if self._closed:
            raise BackendError("the writer is closed: nothing more can be written")
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending.append((write, future))
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name="aiojobs-writer")
        return future

    # -- writing ------------------------------------------------------------------------------

    async def _drain(self) -> None:
        try:
            await asyncio.sleep(0)  # let everything asked for in this loop iteration join
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:len(batch)]
                self._writing = True
                try:
                    await self._write(batch)
                except asyncio.CancelledError:
                    _fail(batch, BackendError("the writer gave up at shutdown"))
                    raise
                finally:
                    self._writing = False
                self._on_written()
        finally:
            self._task = None

    async def _write(self, batch: _Pending) -> None:
        """Write ``batch`` until it goes through; settle every future in it."""
        delay = 0.05
        while True:
            try:
                replies = await self._flush([write for write, _ in batch])
            except BackendUnavailableError as exc:
                outage = self._outage.failed("writer", exc)
                if self._give_up_at is not None and asyncio.get_running_loop().time() >= self._give_up_at:
                    _fail(batch, exc)
                    return
                await self._outage.pause(delay, after=outage)
                delay = min(delay * 2, _MAX_BACKOFF)
                continue
            except BackendError as exc:
                self._outage.succeeded("writer")  # it answered: it is there
                if len(batch) == 1:
                    _fail(batch, exc)
                    return
                middle = len(batch) // 2  # one write is refused: find it, write the others
                await self._write(batch[:middle])
                await self._write(batch[middle:])
                return
            except Exception as exc:  # a bug: fail the waiters rather than hang them
                _fail(batch, exc)
                return
            self._outage.succeeded("writer")
            for (_, future), reply in zip(batch, replies, strict=True):
                if not future.done():
                    future.set_result(reply)
            return

    async def _flush(self, writes: Sequence[Write]) -> list[Reply]:
        starts = [w for w in writes if isinstance(w, JobStart)]
        outcomes = [w for w in writes if isinstance(w, JobOutcome)]
        written = await self._s.backend.job_write_many(
            starts, outcomes, retention=self._s.settings.retention, now=self._s.clock.for_database()
        )
        by_id = {s.id: s for s in written.started}
        accepted = written.accepted
        return [by_id.get(w.id) if isinstance(w, JobStart) else w.id in accepted for w in writes]

    async def close(self, timeout: float) -> None:
        """Write what is pending; after ``timeout`` seconds stop retrying and fail the rest."""
        self._closed = True
        task = self._task
        if task is None:
            return
        self._give_up_at = asyncio.get_running_loop().time() + timeout
        done, _ = await asyncio.wait({task}, timeout=timeout + 1.0)
        if not done:
            # The write hangs: give up on it. The jobs stay held in the database under this
            # engine's id, and are rescued as soon as the engine's row is gone.
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            _fail(self._pending, BackendError("the writer gave up at shutdown"))
            self._pending.clear()


def _fail(batch: _Pending, exc: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)
