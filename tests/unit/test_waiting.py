"""The suite's own waiting helpers (tests/_waiting.py): they must fail clearly, never hang."""

from __future__ import annotations

import asyncio
import time

import pytest

from aiojobs_engine import EventKind
from tests._waiting import backend_calls, events, eventually


async def test_eventually_returns_the_first_truthy_value_of_a_plain_or_async_check() -> None:
    calls: list[int] = []

    def plain() -> list[int]:
        calls.append(1)
        return calls if len(calls) >= 3 else []

    assert await eventually(plain) == [1, 1, 1]
    tries = 0

    async def async_check() -> str:
        nonlocal tries
        tries += 1
        await asyncio.sleep(0)
        assert tries >= 3, "not yet"  # an AssertionError means "not yet" too
        return "done"

    assert await eventually(async_check) == "done" and tries == 3


async def test_eventually_says_what_it_waited_for_and_what_it_last_saw() -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"the answer: not met within 0\.05s: expected 42, got 41"):
        await eventually(lambda: _expect(41), timeout=0.05, message="the answer")
    with pytest.raises(AssertionError, match=r"not met within 0\.05s \(last returned \[\]\)"):
        await eventually(list, timeout=0.05)
    assert time.monotonic() - started < 1


async def test_eventually_does_not_retry_other_errors_nor_wait_past_its_timeout() -> None:
    attempts = 0

    def broken() -> None:
        nonlocal attempts
        attempts += 1
        raise KeyError("gone")

    with pytest.raises(KeyError):
        await eventually(broken)
    assert attempts == 1

    async def hangs() -> bool:
        await asyncio.Event().wait()
        return True

    with pytest.raises(AssertionError, match=r"hangs: not met within 0\.05s"):
        await eventually(hangs, timeout=0.05)


async def test_events_are_recorded_from_the_start_of_the_block(make_engine) -> None:
    engine = make_engine()

    @engine.job
    async def job(n: int) -> int:
        return n

    async with engine:
        async with events(engine, kinds={EventKind.JOB_COMPLETED}) as seen:
            records = [await job.enqueue(n) for n in range(3)]
            assert await engine.workoff() == 3
            ids = {r.id for r in records}
            done = await seen.wait_for(lambda e: e.job.id in ids, count=3)  # they came before the wait
            assert sorted(e.result for e in done) == [0, 1, 2]
            with pytest.raises(AssertionError, match=r"expected 4 matching event\(s\) within 0\.05s, saw 3"):
                await seen.wait_for(count=4, timeout=0.05)
        await job.enqueue(3)
        assert await engine.workoff() == 1
    assert len(seen.events) == 3  # none after the block


async def test_backend_calls_count_and_put_the_method_back(make_engine) -> None:
    engine = make_engine()
    async with engine:
        backend = engine.backend
        async with backend_calls(engine, "queue_list") as reads:
            await engine.list_queues()
            await engine.list_queues()
            assert await reads.until(2) == 2
            with pytest.raises(AssertionError, match=r"call\(s\) of backend\.queue_list within 0\.05s, got 2"):
                await reads.more(1, timeout=0.05)
        assert "queue_list" not in vars(backend)  # the class's method again


def _expect(value: int) -> bool:
    assert value == 42, f"expected 42, got {value}"
    return True
