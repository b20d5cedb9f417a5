"""The lifecycle shared by background loops: one named task, log and survive, never swallow cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from .._errors import BackendError
from .._log import Event, logger


class Periodic:
    """Run ``step`` every ``interval`` seconds until cancelled.

    An ``Exception`` from a step is logged (briefly for a database error, with the traceback
    for anything else) and the loop carries on; ``CancelledError`` ends it.
    """

    def __init__(self, name: str, interval: float, step: Callable[[], Awaitable[None]]) -> None:
        self.name = name
        self.interval = interval
        self._step = step

    async def run(self) -> None:
        while True:
            try:
                await self._step()
            except BackendError as exc:
                logger.warning("%s: database error: %s", self.name, exc,
                               extra={"event": Event.COMPONENT_ERROR, "component": self.name})
            except Exception:
                logger.exception("%s failed; carrying on", self.name,
                                 extra={"event": Event.COMPONENT_ERROR, "component": self.name})
            await asyncio.sleep(self.interval)
