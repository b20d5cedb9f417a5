"""What the runtime tests build around the fake backend: the ``Services`` bundle, job
definitions, an ``Outage`` that remembers what it was told, and a runner wired to a real
writer (``RunnerRig``), as the runtime wires them, minus the producer."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from aiojobs_engine._backends._protocol import Backend, EngineRegistration, JobClaim, QueueDemand
from aiojobs_engine._definitions import JobDefinition, Registry, make_definition
from aiojobs_engine._events import EventBus
from aiojobs_engine._hooks import Hooks, hooks_from
from aiojobs_engine._options import JobOptions
from aiojobs_engine._records import JobRecord
from aiojobs_engine._retry import BackoffPolicy
from aiojobs_engine._runtime._outage import Outage
from aiojobs_engine._runtime._process_pool import ProcessPool
from aiojobs_engine._runtime._runner import Runner
from aiojobs_engine._runtime._services import Services
from aiojobs_engine._runtime._writer import Writer
from aiojobs_engine._settings import EngineSettings

from ._fake import FakeBackend

ENGINE_ID = "engine-1"
START = datetime(2030, 1, 7, 12, 0, tzinfo=UTC)  # the frozen clock's start: on a minute, for cron ticks

# Short intervals: the components' own waits (polls, back-offs) stay within a test's patience.
FAST: dict[str, Any] = {"poll_interval": 0.05, "heartbeat_interval": 0.1, "stale_after": 0.6,
                        "reaper_interval": 0.1, "shutdown_grace": 1.0, "thread_workers": 4}


def make_services(fake: FakeBackend, registry: Registry | None = None, *, hooks: Hooks | None = None,
                  incarnation: str = "life-1", **settings: Any) -> Services:
    registration = EngineRegistration(id=ENGINE_ID, incarnation=incarnation, host=socket.gethostname(),
                                      pid=os.getpid(), queues=None)
    return Services(
        backend=cast(Backend, fake),  # it implements what the runtime components call, no more
        clock=fake.clock, settings=EngineSettings(**{**FAST, **settings}),
        registry=Registry() if registry is None else registry,  # (an empty Registry is falsy)
        hooks=hooks or Hooks(), registration=registration, events=EventBus(),
    )


def declare(registry: Registry, target: Callable[..., Any], *, name: str | None = None,
            retry: BackoffPolicy | None = None, requeue_delay: float = 5.0, **hooks: Any) -> JobDefinition:
    """Declare ``target`` as a job, as ``@engine.job`` does."""
    definition = make_definition(target, name=name, cpu_bound=False, options=JobOptions(), retry=retry,
                                 hooks=hooks_from(hooks), requeue_delay=requeue_delay, is_class=False)
    registry.add(definition)
    return definition


class Logs:
    """The engine's log records, caught as they are emitted (the runtime logs on the test's thread)."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self._caplog = caplog

    def of(self, event: str) -> list[logging.LogRecord]:
        return [r for r in self._caplog.records if getattr(r, "event", None) == event]


class RecordingOutage(Outage):
    """An ``Outage`` that also remembers who reported what."""

    def __init__(self) -> None:
        super().__init__(ENGINE_ID)
        self.failures: list[str] = []
        self.successes = 0

    def failed(self, component: str, error: BaseException) -> None:
        self.failures.append(component)
        super().failed(component, error)

    def succeeded(self, component: str) -> None:
        self.successes += 1
        super().succeeded(component)


class RunnerRig:
    """A runner and a real writer on the fake backend; claims are made by hand."""

    def __init__(self, services: Services, fake: FakeBackend) -> None:
        self.services = services
        self.fake = fake
        self.outage = RecordingOutage()
        self.writer = Writer(services, self.outage, on_written=lambda: None)
        self.released: list[str] = []  # the queue of each slot given back, in order
        self._slot_back = asyncio.Event()
        self.idle_calls = 0
        self.runner = Runner(services, self.writer, ProcessPool(1), release_slot=self._release,
                             capped=lambda queue: False, key_freed=lambda queue: None, on_idle=self._idle)

    def _idle(self) -> None:
        self.idle_calls += 1

    def _release(self, queue: str) -> None:
        self.released.append(queue)
        self._slot_back.set()

    async def claim(self, queue: str = "q", limit: int = 1, *, start_now: bool = True) -> list[JobRecord]:
        """Claim as the producer would (``start_now``: straight into running), and start the runs."""
        names = [d.name for d in self.services.registry if self.runner.starts_at_once(d)] if start_now else []
        records = await self.fake.job_claim(JobClaim(engine_id=ENGINE_ID, demands=[QueueDemand(queue, limit)],
                                                     now=self.fake.clock.now(), start_now=names))
        for record in records:
            self.runner.start(record)
        return records

    async def idle(self, timeout: float = 2.0) -> None:
        async with asyncio.timeout(timeout):
            await self.runner.wait_idle()

    async def slot_given_back(self, within: float) -> bool:
        """Was a slot given back (now, or within ``within`` seconds)?"""
        try:
            async with asyncio.timeout(within):
                await self._slot_back.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        await self.runner.hand_back_all(1.0)
        await self.writer.close(1.0)
        await self.runner.close(1.0)
