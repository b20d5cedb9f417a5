"""The lifecycle shared by background loops: one named task, log and survive, never swallow cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from .._errors import BackendError, BackendUnavailableError
from .._log import Event, logger
from ._outage import Outage


class Periodic:
    """Run ``step`` every ``interval`` seconds until cancelled.

    The database out of reach is reported to ``Outage`` (logged once per outage), and so is
    the next step that went through to it (a step that asked the database nothing returns
    ``False``); another database error is logged briefly, anything else with its traceback;
    the loop carries on. ``CancelledError`` ends it.
    """

    def __init__(self, name: str, interval: float, step: Callable[[], Awaitable[object]], outage: Outage) -> None:
        self.name = name
        self.interval = interval
        self._step = step
        self._outage = outage

    async def run(self) -> None:
        while True:
            try:
                reached = await self._step()
            except BackendUnavailableError as exc:
                self._outage.failed(self.name, exc)
            except BackendError as exc:
                logger.warning("%s: database error: %s", self.name, exc,
                               extra={"event": Event.COMPONENT_ERROR, "component": self.name})
            except Exception:
                logger.exception("%s failed; carrying on", self.name,
                                 extra={"event": Event.COMPONENT_ERROR, "component": self.name})
            else:
                if reached is not False:  # (a step that asked the database nothing says False)
                    self._outage.succeeded(self.name)  # ends an outage only if this loop had failed in it
            await asyncio.sleep(self.interval)
