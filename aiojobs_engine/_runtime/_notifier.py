"""The notifier: turns database notifications into immediate wake-ups.

Notifications wake; polling guarantees. The listening connection is checked every few
seconds; when it is found dead (or cannot be opened) the notifier logs the switch, keeps
retrying with backoff while the dispatcher's polling carries the load, and on reconnecting
triggers one catch-up poll for whatever was enqueued meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from .._backends._protocol import NOTIFY_CANCEL, NOTIFY_ENQUEUED, NOTIFY_QUEUE, Listener
from .._errors import BackendError
from .._log import Event, logger
from ._services import Services

CHECK_EVERY_POLLS = 5  # the listening connection is checked every 5 poll intervals (at least 1 s)
_MAX_BACKOFF = 30.0


class Notifier:
    def __init__(
        self,
        services: Services,
        *,
        on_enqueued: Callable[[list[str] | None], None],
        on_cancel: Callable[[int], None],
        on_queue_changed: Callable[[], None],
    ) -> None:
        self._s = services
        self._on_enqueued = on_enqueued
        self._on_cancel = on_cancel
        self._on_queue_changed = on_queue_changed
        self.connected = asyncio.Event()
        self.received = 0

    def _dispatch(self, payload: str) -> None:
        self.received += 1
        kind, _, subject = payload.partition(":")
        if kind == NOTIFY_ENQUEUED:
            self._on_enqueued([subject] if subject else None)
        elif kind == NOTIFY_CANCEL and subject.isdigit():
            self._on_cancel(int(subject))
        elif kind == NOTIFY_QUEUE:
            self._on_queue_changed()

    async def run(self) -> None:
        backoff = 0.5
        was_down = False
        while True:
            try:
                listener = await self._s.backend.listen(self._dispatch)
            except BackendError as exc:
                logger.warning("listener: cannot subscribe (%s); polling meanwhile, retry in %.1fs", exc, backoff,
                               extra={"event": Event.LISTENER_DOWN, "engine_id": self._s.engine_id})
                was_down = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            backoff = 0.5
            if was_down:
                logger.info("listener: subscribed again", extra={"event": Event.LISTENER_UP,
                                                                  "engine_id": self._s.engine_id})
            self._on_enqueued(None)  # catch up on anything enqueued while not listening
            self.connected.set()
            try:
                await self._watch(listener)
            except BackendError as exc:
                logger.warning("listener: connection lost (%s); polling meanwhile", exc,
                               extra={"event": Event.LISTENER_DOWN, "engine_id": self._s.engine_id})
                was_down = True
            finally:
                self.connected.clear()
                with contextlib.suppress(BackendError):
                    await listener.close()

    async def _watch(self, listener: Listener) -> None:
        every = max(1.0, CHECK_EVERY_POLLS * self._s.settings.poll_interval)
        while True:
            await asyncio.sleep(every)
            await listener.check()
