"""Outage: one line when the database goes away, one when it is back, whoever reports; and
back-offs that only the database's return (or the caller's own event) cut short."""

from __future__ import annotations

import asyncio
import threading

from aiojobs_engine._errors import BackendUnavailableError
from aiojobs_engine._runtime._outage import Outage
from aiojobs_engine._runtime._periodic import Periodic
from tests._waiting import eventually
from tests.runtime._support import ENGINE_ID, Logs


def test_an_outage_is_said_once_whoever_reports_it_and_its_end_once(logs: Logs) -> None:
    outage = Outage(ENGINE_ID)
    outage.succeeded("claims")  # nothing was down: nothing to say
    for component in ("claims", "writer", "claims"):
        outage.failed(component, BackendUnavailableError("connection refused"))
    assert outage.down
    outage.succeeded("heartbeat")  # it never failed in this outage: it proves nothing
    assert outage.down and not logs.of("database.up")
    outage.succeeded("writer")
    outage.succeeded("claims")
    (down,) = logs.of("database.down")
    assert "claims: connection refused" in down.getMessage() and down.levelname == "WARNING"
    (up,) = logs.of("database.up")
    assert up.levelname == "INFO" and not outage.down
    outage.failed("writer", BackendUnavailableError("again"))
    assert len(logs.of("database.down")) == 2 and outage.count == 2


async def test_a_back_off_ends_when_the_outage_it_failed_in_ends_or_has_ended() -> None:
    outage = Outage(ENGINE_ID)
    failed_in = outage.failed("claims", BackendUnavailableError("down"))
    pausing = asyncio.create_task(outage.pause(60.0, after=failed_in))
    outage.succeeded("claims")  # it got through (before or after the pause began: the same)
    await asyncio.wait_for(pausing, 5)
    # A failure in an outage that has ended by the time its component backs off: no wait.
    stale = outage.failed("writer", BackendUnavailableError("down again"))
    outage.succeeded("writer")
    await asyncio.wait_for(outage.pause(60.0, after=stale), 1)


async def test_the_heartbeat_thread_ending_an_outage_wakes_the_paused_components() -> None:
    outage = Outage(ENGINE_ID)
    failed_in = outage.failed("heartbeat", BackendUnavailableError("down"))
    pausing = asyncio.create_task(outage.pause(60.0, after=failed_in))
    thread = threading.Thread(target=outage.succeeded, args=("heartbeat",))
    thread.start()
    await asyncio.wait_for(pausing, 5)
    thread.join()


async def test_a_pause_is_cut_short_by_its_own_event_and_otherwise_runs_its_course() -> None:
    outage = Outage(ENGINE_ID)
    stop = asyncio.Event()
    stop.set()
    await asyncio.wait_for(outage.pause(60.0, unless=stop), 5)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await outage.pause(0.05)  # nothing ends it early: the whole back-off
    assert loop.time() - t0 >= 0.04


async def test_a_loop_step_that_asked_the_database_nothing_does_not_end_an_outage(logs: Logs) -> None:
    outage = Outage(ENGINE_ID)
    seen: list[bool] = []
    done = asyncio.Event()

    async def step() -> bool | None:
        seen.append(outage.down)
        if len(seen) == 1:
            raise BackendUnavailableError("down")
        if len(seen) == 2:
            return False  # nothing to ask (no claims to watch): proves nothing
        done.set()
        return None  # it asked, and got an answer

    loop = asyncio.create_task(Periodic("claim watch", 0.0, step, outage).run())
    try:
        await asyncio.wait_for(done.wait(), 2)
        await eventually(lambda: not outage.down, timeout=2)  # (its return is handled once it is back)
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
    assert seen[:3] == [False, True, True] and not outage.down
    assert len(logs.of("database.down")) == 1 and len(logs.of("database.up")) == 1
