"""An engine through a database outage (issue 19), the database behind a TCP proxy the test
cuts: the engine carries on afterwards, loses no outcome, and nothing logs a traceback for
what is only the database being away."""

from __future__ import annotations

import asyncio
import logging

import pytest

from aiojobs_engine import Engine, JobState
from tests._proxy import CutMode, TcpProxy
from tests._waiting import eventually
from tests.conftest import FAST

pytestmark = pytest.mark.postgres


async def _attempts(proxy: TcpProxy, more: int) -> None:
    """Until the engine has tried ``more`` new connections through the (cut) proxy."""
    target = proxy.accepted + more
    await eventually(lambda: proxy.accepted >= target, timeout=20, message=f"{more} connection attempts")


async def test_an_outage_logs_no_traceback_and_loses_nothing(
    postgres_url: str, postgres_proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    engine = Engine(postgres_proxy.url(postgres_url), **{**FAST, "stale_after": 30.0})
    started = asyncio.Event()
    release = asyncio.Event()

    @engine.job
    async def waits() -> str:
        started.set()
        await release.wait()
        return "finished during the outage"

    @engine.job
    async def after() -> str:
        return "after"

    async with engine.running():
        record = await waits.enqueue()
        assert record
        await asyncio.wait_for(started.wait(), 10)
        await postgres_proxy.cut(CutMode.RESET)  # every connection dies, every new one too
        release.set()  # the job ends while nothing can reach the database
        await _attempts(postgres_proxy, 20)  # the engine's parts keep trying meanwhile
        await postgres_proxy.restore()
        done = await engine.wait_for(record.id, timeout=30)
        later = await engine.wait_for((await after.enqueue()).id, timeout=30)  # type: ignore[union-attr]
    assert done.state is JobState.COMPLETED and done.attempt == 1 and done.result == "finished during the outage"
    assert later.state is JobState.COMPLETED
    tracebacks = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.exc_info]
    assert tracebacks == []
    assert [r.getMessage() for r in caplog.records if r.name.startswith("asyncpg")] == []
