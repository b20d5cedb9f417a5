"""The notifier: a listener the driver reports lost is replaced at once, each subscription
catches up on what it missed, and liveness checks stay a few seconds apart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from aiojobs_engine._errors import BackendUnavailableError
from aiojobs_engine._runtime._notifier import Notifier, check_interval
from tests._waiting import eventually


@pytest.mark.parametrize(("poll_interval", "expected"), [(0.05, 1.0), (0.5, 2.5), (1.0, 5.0), (30.0, 5.0)])
def test_liveness_checks_are_a_few_seconds_apart_whatever_the_poll_interval(
        poll_interval: float, expected: float) -> None:
    assert check_interval(poll_interval) == expected


class _Listener:
    def __init__(self) -> None:
        self.lost = asyncio.Event()
        self.checks = 0
        self.closed = False

    async def wait_lost(self) -> None:
        await self.lost.wait()

    async def check(self) -> None:
        self.checks += 1
        if self.lost.is_set():
            raise BackendUnavailableError("the connection listening on 'x' is closed")

    async def close(self) -> None:
        self.closed = True


class _Backend:
    def __init__(self) -> None:
        self.listeners: list[_Listener] = []

    async def listen(self, on_notify: Callable[[str], None]) -> _Listener:
        self.listeners.append(_Listener())
        return self.listeners[-1]


async def test_a_listener_reported_lost_is_replaced_at_once_and_each_subscription_catches_up() -> None:
    backend = _Backend()
    services: Any = SimpleNamespace(backend=backend, engine_id="e1", settings=SimpleNamespace(poll_interval=30.0))
    calls: list[str] = []
    notifier = Notifier(services, on_enqueued=lambda queues: calls.append(f"enqueued:{queues}"),
                        on_cancel=lambda job_id: None, on_queue_changed=lambda: calls.append("queues"))
    task = asyncio.create_task(notifier.run())
    try:
        await asyncio.wait_for(notifier.connected.wait(), 1)
        assert calls == ["queues", "enqueued:None"]
        backend.listeners[0].lost.set()  # what asyncpg's termination listener does
        await eventually(lambda: len(backend.listeners) >= 2 and notifier.connected.is_set(), timeout=1,
                         interval=0.005, message="a new listener")  # not the 5 s liveness check, nor the 30 s poll
        assert backend.listeners[0].closed and backend.listeners[0].checks == 1
        assert calls == ["queues", "enqueued:None"] * 2
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert backend.listeners[1].closed


async def test_a_burst_of_changes_reads_settings_at_once_and_once_more_at_its_end() -> None:
    from aiojobs_engine._backends._protocol import NOTIFY_CHANGED
    from aiojobs_engine._runtime import _notifier

    reads: list[float] = []
    wakes: list[object] = []
    notifier = _notifier.Notifier.__new__(_notifier.Notifier)
    notifier._on_enqueued = wakes.append
    notifier._on_queue_changed = lambda: reads.append(time.monotonic())
    notifier._on_cancel = lambda job_id: None
    notifier.received = 0
    notifier._settings_read_at = -_notifier.CHANGED_SETTINGS_EVERY
    notifier._trailing = None
    started = time.monotonic()
    for _ in range(5):
        notifier._dispatch(NOTIFY_CHANGED)
        await asyncio.sleep(0.01)  # the workload: a burst of changes, 10 ms apart
    assert len(reads) == 1 and len(wakes) == 5  # every change wakes; settings read once so far
    await eventually(lambda: len(reads) == 2, timeout=_notifier.CHANGED_SETTINGS_EVERY + 1,
                     message="the trailing read")  # for the burst's last change
    assert reads[1] - started >= _notifier.CHANGED_SETTINGS_EVERY - 0.01
