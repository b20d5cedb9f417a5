"""The heartbeat thread's failure log says what failed, even for an error without a message."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from aiojobs_engine._clock import SystemClock
from aiojobs_engine._runtime._heartbeat import HeartbeatThread


class _FailingBackend:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def open(self) -> None:
        raise self.error

    async def engine_heartbeat(self, registration: object, *, now: object) -> Any:
        raise self.error


def _thread(backend: _FailingBackend) -> HeartbeatThread:
    services: Any = SimpleNamespace(
        engine_id="e1", registration=SimpleNamespace(id="e1"), clock=SystemClock(),
        settings=SimpleNamespace(heartbeat_interval=0.01, stale_after=60.0),
    )
    return HeartbeatThread(services, lambda: backend, monitor=None,  # type: ignore[arg-type]
                           on_lost=lambda: None, on_revived=lambda: None)


@pytest.mark.parametrize(("error", "shown"), [
    (TimeoutError(), "TimeoutError"),
    (ConnectionError("connection refused"), "connection refused"),
])
def test_a_failed_beat_logs_the_error_type_when_the_message_is_empty(
    error: Exception, shown: str, caplog: pytest.LogCaptureFixture,
) -> None:
    backend = _FailingBackend(error)
    thread = _thread(backend)
    loop = asyncio.new_event_loop()
    try:
        with caplog.at_level(logging.WARNING, logger="aiojobs_engine"):
            thread._beat(loop, backend)  # type: ignore[arg-type]
            assert not thread._try(loop, backend.open(), "open a connection")
    finally:
        loop.close()
    beat, opening = (r.getMessage() for r in caplog.records)
    assert beat.startswith(f"heartbeat failed ({shown}); silent for ")
    assert opening == f"heartbeat could not open a connection: {shown}"
