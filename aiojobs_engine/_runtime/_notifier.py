"""The notifier: turns database notifications into immediate wake-ups.

Owns: the listening connection. Notifications wake; polling guarantees. The listening
connection is replaced as soon as the driver reports it closed, and checked every few
seconds (whatever the poll interval) for deaths no one reports. When it is found dead (or
cannot be opened) the notifier keeps retrying with backoff while the producer's polling
carries the load (an outage is logged once, by ``Outage``; a listener lost while the
database answers is logged on its own), and on reconnecting triggers one catch-up poll for
whatever was enqueued meanwhile.

May call: the backend's ``listen``, and the callbacks it is given: jobs enqueued (the
producer), a cancellation (the runner), queue settings changed (the producer).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from .._backends._protocol import NOTIFY_CANCEL, NOTIFY_CHANGED, NOTIFY_ENQUEUED, NOTIFY_QUEUE, Listener
from .._errors import BackendError, BackendUnavailableError
from .._log import Event, logger
from ._outage import Outage
from ._services import Services

CHECK_EVERY_POLLS = 5  # the listening connection is checked every 5 poll intervals,
MIN_CHECK_INTERVAL = 1.0  # but at least 1 s apart
MAX_CHECK_INTERVAL = 5.0  # and at most 5 s: a long poll_interval must not hide a dead listener
_MAX_BACKOFF = 30.0
CHANGED_SETTINGS_EVERY = 0.25  # seconds: queue settings re-read on "changed" at most this often


class Notifier:
    def __init__(
        self,
        services: Services,
        *,
        on_enqueued: Callable[[list[str] | None], None],
        on_cancel: Callable[[int], object],
        on_queue_changed: Callable[[], None],
        outage: Outage | None = None,
    ) -> None:
        self._s = services
        self._outage = outage or Outage(services.engine_id)
        self._on_enqueued = on_enqueued
        self._on_cancel = on_cancel
        self._on_queue_changed = on_queue_changed
        self.connected = asyncio.Event()
        self.received = 0
        self._settings_read_at = -CHANGED_SETTINGS_EVERY
        self._trailing: asyncio.TimerHandle | None = None

    def _dispatch(self, payload: str) -> None:
        self.received += 1
        kind, _, subject = payload.partition(":")
        if kind == NOTIFY_ENQUEUED:
            self._on_enqueued([subject] if subject else None)
        elif kind == NOTIFY_CHANGED:
            # Anything may have changed: jobs may have come (claim), and queues too (re-read
            # them, at most a few times a second: a queue new to this engine is only worked
            # once its settings are read). Cancellations are found by the claim watcher.
            self._read_settings_soon()
            self._on_enqueued(None)
        elif kind == NOTIFY_CANCEL and subject.isdigit():
            self._on_cancel(int(subject))
        elif kind == NOTIFY_QUEUE:
            self._on_queue_changed()

    def _read_settings_soon(self) -> None:
        """Re-read queue settings now, or at the end of the current window if they were just
        read (one trailing read, so the last change of a burst is not left for the poll)."""
        if self._trailing is not None:
            return
        wait = self._settings_read_at + CHANGED_SETTINGS_EVERY - time.monotonic()
        if wait <= 0:
            self._settings_read_at = time.monotonic()
            self._on_queue_changed()
            return

        def trailing() -> None:
            self._trailing = None
            self._read_settings_soon()

        self._trailing = asyncio.get_running_loop().call_later(wait, trailing)

    async def run(self) -> None:
        try:
            await self._subscribe_for_ever()
        finally:
            if self._trailing is not None:
                self._trailing.cancel()

    async def _subscribe_for_ever(self) -> None:
        backoff = 0.5
        lost: BackendError | None = None  # the connection was lost: said once it is known whether the database is
        failing: str | None = None  # subscribing fails: "outage" or "listener" (said once, by whom)
        while True:
            try:
                listener = await self._s.backend.listen(self._dispatch)
            except BackendError as exc:
                outage = None
                if isinstance(exc, BackendUnavailableError):  # the database is away: one warning for everything
                    outage = self._outage.failed("listener", exc)
                    failing = failing or "outage"
                elif failing is None:
                    logger.warning("listener: cannot subscribe (%s); polling meanwhile", exc,
                                   extra={"event": Event.LISTENER_DOWN, "engine_id": self._s.engine_id})
                    failing = "listener"
                lost = None  # (part of what was just said)
                await self._outage.pause(backoff, after=outage)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            backoff = 0.5
            self._outage.succeeded("listener")
            if lost is not None:  # only the listening connection died: one line says it all
                logger.warning("listener: connection lost (%s); subscribed again", lost,
                               extra={"event": Event.LISTENER_DOWN, "engine_id": self._s.engine_id})
            elif failing == "listener":
                logger.info("listener: subscribed again", extra={"event": Event.LISTENER_UP,
                                                                  "engine_id": self._s.engine_id})
            lost, failing = None, None
            # Catch up on what was missed while not listening: queue settings (a queue new to
            # this engine is only worked once they are read) and enqueued jobs.
            self._on_queue_changed()
            self._on_enqueued(None)
            self.connected.set()
            try:
                await self._watch(listener)
            except BackendError as exc:
                lost = exc
            finally:
                self.connected.clear()
                with contextlib.suppress(BackendError):
                    await listener.close()

    async def _watch(self, listener: Listener) -> None:
        every = check_interval(self._s.settings.poll_interval)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every):
                    await listener.wait_lost()  # the driver saw it close: check (and fail) now
            await listener.check()


def check_interval(poll_interval: float) -> float:
    """Seconds between liveness checks of the listening connection."""
    return min(max(MIN_CHECK_INTERVAL, CHECK_EVERY_POLLS * poll_interval), MAX_CHECK_INTERVAL)
