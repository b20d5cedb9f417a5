"""Wait for the engine's log records, from any thread: ``async with LogWatch() as logs:
...; record = await logs.wait_for("loop.blocked")``. The engine logs from the heartbeat
thread too; records are handed to the test's loop as they come."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import TracebackType

_LOGGER = "aiojobs_engine"


class LogWatch(logging.Handler):
    def __init__(self, level: int = logging.DEBUG) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()
        self._old_level = logging.NOTSET

    async def __aenter__(self) -> LogWatch:
        self._loop = asyncio.get_running_loop()
        logger = logging.getLogger(_LOGGER)
        self._old_level = logger.level
        logger.setLevel(min(self.level, logger.getEffectiveLevel()))
        logger.addHandler(self)
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        logger = logging.getLogger(_LOGGER)
        logger.removeHandler(self)
        logger.setLevel(self._old_level)

    def emit(self, record: logging.LogRecord) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._add, record)

    def _add(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self._changed.set()

    def of(self, event: str) -> list[logging.LogRecord]:
        return [r for r in self.records if getattr(r, "event", None) == event]

    async def wait_for(self, event: str, check: Callable[[logging.LogRecord], bool] = lambda r: True,
                       timeout: float = 10.0) -> logging.LogRecord:
        """The first record of ``event`` that passes ``check``, waiting for it if need be."""
        async with asyncio.timeout(timeout):
            while True:
                for record in self.of(event):
                    if check(record):
                        return record
                self._changed.clear()
                await self._changed.wait()
