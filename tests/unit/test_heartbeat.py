"""The heartbeat thread: its failure log says what failed, even for an error without a
message; what it builds, and when."""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest

from aiojobs_engine._backends._protocol import Heartbeat
from aiojobs_engine._clock import SystemClock
from aiojobs_engine._runtime._heartbeat import HeartbeatThread, LoopMonitor
from tests._waiting import eventually


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
@pytest.mark.parametrize("what", ["beat", "open"])
def test_a_failed_beat_logs_the_error_type_when_the_message_is_empty(
    error: Exception, shown: str, what: str, caplog: pytest.LogCaptureFixture,
) -> None:
    backend = _FailingBackend(error)
    thread = _thread(backend)
    loop = asyncio.new_event_loop()
    try:
        with caplog.at_level(logging.WARNING, logger="aiojobs_engine"):
            if what == "beat":
                thread._beat(loop, backend)  # type: ignore[arg-type]
                thread._beat(loop, backend)  # type: ignore[arg-type]  # (the same outage: said once)
            else:
                assert not thread._try(loop, backend.open(), "open a connection")
    finally:
        loop.close()
    (said,) = (r.getMessage() for r in caplog.records)
    assert said.startswith(f"the database cannot be reached (heartbeat: {shown})")


class _BeatingBackend:
    """Beats fine; notes the loop it was opened on."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    async def open(self) -> None:
        self.loop = asyncio.get_running_loop()

    async def engine_heartbeat(self, registration: object, *, now: object) -> Heartbeat:
        return Heartbeat.BEAT

    async def close(self) -> None:
        self.closed = True


def _beating(interval: float, opened: list[_BeatingBackend]) -> HeartbeatThread:
    def open_backend() -> _BeatingBackend:
        opened.append(_BeatingBackend())
        return opened[-1]

    services: Any = SimpleNamespace(
        engine_id="e1", registration=SimpleNamespace(id="e1"), clock=SystemClock(),
        settings=SimpleNamespace(heartbeat_interval=interval, stale_after=60.0, blocked_loop_limit=60.0,
                                 loop_lag_warning=30.0),
    )
    return HeartbeatThread(services, open_backend, LoopMonitor(),  # type: ignore[arg-type]
                           on_lost=lambda: None, on_revived=lambda: None)


def test_an_engine_stopped_before_its_first_beat_builds_no_backend() -> None:
    opened: list[_BeatingBackend] = []
    thread = _beating(interval=30.0, opened=opened)
    thread.start()
    # The thread waits for its first beat, one interval away; stop it meanwhile. A pause,
    # kept on purpose: the thread has no signal for "now waiting", and what is checked is
    # that nothing happens (no backend is built), which no event could report.
    time.sleep(0.05)
    thread.stop()
    assert not thread._thread.is_alive()
    assert opened == []


def test_the_heartbeat_runs_on_asyncio_own_loop_whatever_the_policy() -> None:
    uvloop = pytest.importorskip("uvloop")
    policy = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    opened: list[_BeatingBackend] = []
    thread = _beating(interval=0.01, opened=opened)
    try:
        thread.start()
        asyncio.run(eventually(lambda: thread.beats >= 1, message="a first beat"))  # a plain test: no loop
    finally:
        asyncio.set_event_loop_policy(policy)
        thread.stop()
    (backend,) = opened
    assert isinstance(backend.loop, asyncio.SelectorEventLoop)
    assert backend.closed


async def test_a_stopped_loop_monitor_reports_no_blocked_loop() -> None:
    """At shutdown the loop monitor stops before the last writes: the heartbeat thread, still
    beating meanwhile, must not take its silence for a blocked loop."""
    monitor = LoopMonitor()
    task = asyncio.create_task(monitor.run())
    await eventually(lambda: monitor._running, message="the monitor stamps")
    monitor._last_tick -= 60.0  # as if the loop had not turned for a minute
    assert monitor.blocked_for() > 59
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert monitor.blocked_for() == 0.0
