"""Batched writes: many small requests, one statement.

Callers ``submit`` an item and await its own result; items submitted while a flush is in
flight (or in the same loop iteration) go together in the next one. This adds no latency
when idle and turns N round trips into one under load.

Failures:
- the database cannot be reached (``BackendUnavailableError``): the batch is retried with
  backoff until it goes through, or until ``close()``'s deadline — an outcome is never
  dropped because the database blinked;
- the database refuses the batch (any other ``BackendError``): one bad item must not hold
  the others back, so the batch is split and retried in halves until the bad item is alone;
  that item's caller gets the error, everyone else their result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from .._errors import BackendError, BackendUnavailableError
from .._log import Event, logger

T = TypeVar("T")
R = TypeVar("R")

FlushFn = Callable[[Sequence[T]], Awaitable[Sequence[R]]]
_Pending = list[tuple[T, "asyncio.Future[R]"]]


class Batcher(Generic[T, R]):
    def __init__(self, name: str, flush: FlushFn[T, R], *, max_size: int = 500, max_backoff: float = 5.0,
                 on_written: Callable[[], None] | None = None) -> None:
        self._name = name
        self._flush = flush
        self._on_written = on_written  # called after each batch's write ends (whatever its result)
        self._max_size = max_size
        self._max_backoff = max_backoff
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None
        self._writing = False  # a batch is being written
        self._give_up_at: float | None = None  # set by close(): retry until then
        self._closed = False

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def backlog(self) -> int:
        """Items waiting behind a write in flight (0 while none is: they go next)."""
        return len(self._pending) if self._writing else 0

    async def submit(self, item: T) -> R:
        """Queue ``item`` and wait for its result. The write happens even if the caller is
        cancelled meanwhile: the item stays in its batch (only the caller's wait ends)."""
        return await self.submit_nowait(item)

    def submit_nowait(self, item: T) -> asyncio.Future[R]:
        """Queue ``item``; the future settles with its result (or the error that ended it)."""
        if self._closed:
            raise BackendError(f"{self._name}: closed, nothing more can be written")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name=f"aiojobs-{self._name}-flush")
        return future

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let everything submitted in this loop iteration join
        while self._pending:
            batch = self._pending[: self._max_size]
            del self._pending[: len(batch)]
            self._writing = True
            try:
                await self._write(batch)
            except asyncio.CancelledError:
                _fail(batch, BackendError(f"{self._name}: gave up writing at shutdown"))
                raise
            finally:
                self._writing = False
            if self._on_written is not None:
                self._on_written()

    async def _write(self, batch: _Pending[T, R]) -> None:
        """Write ``batch`` until it goes through; settle every future in it."""
        delay = 0.05
        while True:
            try:
                results = await self._flush([item for item, _ in batch])
            except BackendUnavailableError as exc:
                if self._give_up_at is not None and asyncio.get_running_loop().time() >= self._give_up_at:
                    _fail(batch, exc)
                    return
                logger.warning(
                    "%s: database write failed (%s); retrying in %.2fs", self._name, exc, delay,
                    extra={"event": Event.BACKEND_RETRY, "component": self._name},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)
                continue
            except BackendError as exc:
                if len(batch) == 1:
                    _fail(batch, exc)
                    return
                middle = len(batch) // 2  # one item is refused: find it, write the others
                await self._write(batch[:middle])
                await self._write(batch[middle:])
                return
            except Exception as exc:  # a bug: fail the waiters rather than hang them
                _fail(batch, exc)
                return
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
            return

    async def close(self, timeout: float) -> None:
        """Flush what is pending; after ``timeout`` seconds stop retrying and fail the rest."""
        self._closed = True
        task = self._task
        if task is None or task.done():
            return
        self._give_up_at = asyncio.get_running_loop().time() + timeout
        done, _ = await asyncio.wait({task}, timeout=timeout + 1.0)
        if not done:
            # The write hangs: give up on it. The jobs stay held in the database under this
            # engine's id, and are rescued as soon as the engine's row is gone.
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            _fail(self._pending, BackendError(f"{self._name}: gave up writing at shutdown"))
            self._pending.clear()


def _fail(batch: _Pending[T, R], exc: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)
