"""Fixtures of the runtime's unit tests: a frozen clock, the fake backend on it, a registry,
and the ``Services`` bundle around them (see ``_support``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from aiojobs_engine import FrozenClock
from aiojobs_engine._definitions import Registry
from aiojobs_engine._runtime._services import Services

from ._fake import FakeBackend
from ._support import START, Logs, RunnerRig, make_services


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def fake(clock: FrozenClock) -> FakeBackend:
    backend = FakeBackend(clock)
    backend.add_queue("q")
    return backend


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Logs:
    caplog.set_level(logging.DEBUG, logger="aiojobs_engine")
    return Logs(caplog)


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def services(fake: FakeBackend, registry: Registry) -> Services:
    return make_services(fake, registry)


@pytest.fixture
async def rig(services: Services, fake: FakeBackend) -> AsyncIterator[RunnerRig]:
    rig = RunnerRig(services, fake)
    yield rig
    await rig.close()
