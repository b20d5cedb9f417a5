"""Batched writes: many small requests, one statement.

Callers ``submit`` an item and await its own result; items submitted while a flush is in
flight (or in the same loop iteration) go together in the next one. This adds no latency
when idle and turns N round trips into one under load. A flush that fails on a database
error is retried with backoff until it succeeds or the batcher is closed with a deadline:
an outcome is never dropped because the database blinked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from .._errors import BackendError
from .._log import Event, logger

T = TypeVar("T")
R = TypeVar("R")

FlushFn = Callable[[Sequence[T]], Awaitable[Sequence[R]]]


class Batcher(Generic[T, R]):
    def __init__(self, name: str, flush: FlushFn[T, R], *, max_size: int = 500, max_backoff: float = 5.0) -> None:
        self._name = name
        self._flush = flush
        self._max_size = max_size
        self._max_backoff = max_backoff
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None
        self._give_up_at: float | None = None  # set by close(): retry until then

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def submit(self, item: T) -> R:
        """Queue ``item`` and wait for its result; the write happens even if the caller is cancelled."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name=f"aiojobs-{self._name}-flush")
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let everything submitted in this loop iteration join
        delay = 0.05
        while self._pending:
            batch = self._pending[: self._max_size]
            try:
                results = await self._flush([item for item, _ in batch])
            except BackendError as exc:
                if self._give_up_at is not None and asyncio.get_running_loop().time() >= self._give_up_at:
                    self._fail(batch, exc)
                    continue
                logger.warning(
                    "%s: database write failed (%s); retrying in %.2fs", self._name, exc, delay,
                    extra={"event": Event.BACKEND_RETRY, "component": self._name},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)
                continue
            except Exception as exc:  # a bug: fail the waiters rather than hang them
                self._fail(batch, exc)
                continue
            delay = 0.05
            del self._pending[: len(batch)]
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    def _fail(self, batch: list[tuple[T, asyncio.Future[R]]], exc: BaseException) -> None:
        del self._pending[: len(batch)]
        for _, future in batch:
            if not future.done():
                future.set_exception(exc)

    async def close(self, timeout: float) -> None:
        """Flush what is pending; after ``timeout`` seconds stop retrying and fail the rest."""
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
            self._fail(self._pending, BackendError(f"{self._name}: gave up writing at shutdown"))
