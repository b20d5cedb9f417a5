"""The producer: what this engine claims and when. It claims only free slots, queue by queue
in priority order; a freed slot, an enqueue or a settings change wakes it; it holds back
while the writer is behind (and owes the poll it held back); drain mode ends when nothing
is left; a failed claim backs off and, next time, reconciles before claiming.

The callables the producer is given (``ProducerLinks``) are stand-ins that note each call
on the fake backend's timeline, so a test can check the order of callbacks and statements.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest

from aiojobs_engine._backends._protocol import QueueDemand
from aiojobs_engine._definitions import Registry
from aiojobs_engine._errors import BackendUnavailableError
from aiojobs_engine._options import QueueConfig
from aiojobs_engine._records import JobRecord, QueueRecord
from aiojobs_engine._runtime._producer import Producer, ProducerLinks

from ._fake import FakeBackend
from ._support import Logs, RecordingOutage, make_services


class _Links:
    """Stand-ins for the runner, the writer and recovery."""

    def __init__(self, fake: FakeBackend) -> None:
        self.fake = fake
        self.started: list[JobRecord] = []
        self.in_flight = 0
        self.behind = False

    def start_run(self, record: JobRecord) -> None:
        self.started.append(record)
        self.in_flight += 1

    def writer_behind(self, limit: int) -> bool:
        self.fake.note("writer_behind", limit=limit, answer=self.behind)
        return self.behind

    async def reconcile(self) -> None:
        self.fake.note("reconcile")

    def links(self) -> ProducerLinks:
        return ProducerLinks(start_run=self.start_run, in_flight=lambda: self.in_flight,
                             starts_at_once=lambda definition: True, writer_behind=self.writer_behind,
                             reconcile=self.reconcile)


@pytest.fixture
def fake(fake: FakeBackend) -> FakeBackend:
    fake.queues.clear()  # each test lays out its own queues
    return fake


@pytest.fixture
def links(fake: FakeBackend) -> _Links:
    return _Links(fake)


def _producer(fake: FakeBackend, links: _Links, *, queues: Mapping[str, QueueConfig] | None = None,
              drain: bool = False, outage: RecordingOutage | None = None, **settings: Any) -> Producer:
    services = make_services(fake, Registry(), **{"poll_interval": 60.0, **settings})
    return Producer(services, queues, links.links(), outage or RecordingOutage(), drain=drain)


@asynccontextmanager
async def _running(producer: Producer) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(producer.run())
    try:
        yield task
    finally:
        producer.stop()
        await asyncio.wait_for(task, 2)


def _demands(fake: FakeBackend, n: int) -> list[QueueDemand]:
    """The demands of the ``n``-th claim (1 for the first)."""
    return list(fake.calls_to("job_claim")[n - 1].args["claim"].demands)


def _methods(fake: FakeBackend) -> list[str]:
    return [call.method for call in fake.calls]


async def test_it_claims_free_slots_by_queue_priority_and_skips_paused_queues(
        fake: FakeBackend, links: _Links) -> None:
    fake.add_queue("low", concurrency=2, priority=60)
    fake.add_queue("high", concurrency=3, priority=10)
    fake.add_queue("paused", concurrency=5, priority=1, paused=True)
    for queue in ("low", "high", "paused"):
        fake.seed(queue=queue, count=5)
    producer = _producer(fake, links)
    async with _running(producer):
        await fake.wait_calls("job_claim", 1)
        assert _demands(fake, 1) == [QueueDemand("high", 3), QueueDemand("low", 2)]
        assert [r.queue for r in links.started] == ["high"] * 3 + ["low"] * 2
        assert _methods(fake)[:3] == ["queue_list", "writer_behind", "job_claim"]  # settings read first
        producer.release("high")  # a run of "high" ended: its queue may hold more
        await fake.wait_calls("job_claim", 2)
        assert _demands(fake, 2) == [QueueDemand("high", 1)]
        assert len(links.started) == 6


async def test_a_global_cap_goes_with_the_claim(fake: FakeBackend, links: _Links) -> None:
    fake.add_queue("capped", concurrency=4, global_concurrency=2)
    fake.add_queue("free", concurrency=1)
    producer = _producer(fake, links)
    async with _running(producer):
        await fake.wait_calls("job_claim", 1)
        assert _demands(fake, 1) == [QueueDemand("capped", 4, 2), QueueDemand("free", 1)]
        assert producer.capped("capped") and not producer.capped("free")


async def test_while_the_writer_is_behind_it_claims_nothing(fake: FakeBackend, links: _Links) -> None:
    fake.add_queue("a", concurrency=3)
    fake.add_queue("b", concurrency=2)
    fake.add_queue("off", concurrency=50, paused=True)
    fake.seed(queue="a", count=3)
    links.behind = True
    producer = _producer(fake, links, claim_batch_size=4)
    async with _running(producer):
        (asked,) = await fake.wait_calls("writer_behind", 1)
        assert asked.args["limit"] == 4  # as many writes as its slots (5, paused ones aside), at most a batch
        producer.jobs_enqueued(["a"])  # wake-ups change nothing while it is behind
        await fake.wait_calls("writer_behind", 2)
        assert fake.calls_to("job_claim") == [] and links.started == []
        links.behind = False
        producer.wake()  # what the end of the write in flight does
        await fake.wait_calls("job_claim", 1)
        assert len(links.started) == 3


async def test_a_poll_held_back_while_the_writer_was_behind_is_made_up_by_the_next_claim(
        fake: FakeBackend, links: _Links) -> None:
    fake.add_queue("q", concurrency=3)
    producer = _producer(fake, links, poll_interval=0.2)
    async with _running(producer):
        await fake.wait_calls("job_claim", 1)  # the first poll: "q" is empty, so only polls ask it again
        links.behind = True
        calls = await fake.wait_calls("writer_behind", 2)  # the next poll, held back
        assert calls[1].args["answer"] is True and len(fake.calls_to("job_claim")) == 1
        held_back = fake.calls.index(calls[1])
        fake.seed(queue="q")  # a job comes due, and nobody says so (a delayed job, say)
        links.behind = False
        producer.wake()  # the write in flight ended
        await fake.wait_calls("job_claim", 2)
        # at once, not a poll later:
        assert _methods(fake)[held_back + 1:held_back + 3] == ["writer_behind", "job_claim"]
        assert _demands(fake, 2) == [QueueDemand("q", 3)] and len(links.started) == 1


async def test_a_queue_new_to_the_engine_has_its_settings_read_before_it_is_claimed(
        fake: FakeBackend, links: _Links) -> None:
    fake.add_queue("old")
    producer = _producer(fake, links)  # it works every queue found in the database
    async with _running(producer):
        await fake.wait_calls("job_claim", 1)
        fake.add_queue("new", concurrency=2, priority=5)
        fake.seed(queue="new", count=5)
        producer.jobs_enqueued(["new"])
        await fake.wait_calls("job_claim", 2)
        assert _methods(fake)[-3:] == ["queue_list", "writer_behind", "job_claim"]
        assert _demands(fake, 2) == [QueueDemand("new", 2)]  # its stored concurrency, not the default


async def test_a_queue_it_was_not_configured_for_is_ignored(fake: FakeBackend, links: _Links) -> None:
    fake.add_queue("mine", concurrency=2)
    fake.add_queue("other")
    producer = _producer(fake, links, queues={"mine": QueueConfig()})
    async with _running(producer):
        await fake.wait_calls("job_claim", 1)
        assert _demands(fake, 1) == [QueueDemand("mine", 2)]
        producer.jobs_enqueued(["other"])
        await fake.wait_calls("writer_behind", 2)
        assert _methods(fake).count("queue_list") == 1 and len(fake.calls_to("job_claim")) == 1


async def test_drain_mode_ends_after_a_round_with_nothing_in_flight_and_nothing_claimed(
        fake: FakeBackend, links: _Links) -> None:
    fake.add_queue("q")
    fake.seed(queue="q", count=2)
    producer = _producer(fake, links, drain=True, poll_interval=0.01)
    async with _running(producer) as task:
        await fake.wait_calls("job_claim", 3)  # rounds that claimed nothing, with two jobs in flight
        assert len(links.started) == 2 and not task.done()
        links.in_flight = 0
        producer.release("q")
        producer.release("q")
        await asyncio.wait_for(task, 2)  # it ended by itself
    assert len(links.started) == 2


async def test_a_failed_claim_is_reported_backs_off_uncut_by_wake_ups_and_reconciles_first(
        fake: FakeBackend, links: _Links, logs: Logs) -> None:
    fake.add_queue("q")
    fake.seed(queue="q")
    fake.fail("job_claim", BackendUnavailableError("connection refused"))
    outage = RecordingOutage()
    poll = 0.1
    producer = _producer(fake, links, outage=outage, poll_interval=poll)
    async with _running(producer):
        await fake.wait_calls("job_claim", 1)
        for _ in range(3):  # none of these cuts the back-off short: only a stop would
            producer.wake()
            producer.jobs_enqueued(["q"])
            producer.settings_changed()
        failed, claimed = await fake.wait_calls("job_claim", 2)
        assert claimed.at - failed.at >= poll
        between = _methods(fake)[fake.calls.index(failed) + 1:fake.calls.index(claimed)]
        assert between[0] == "reconcile"  # a claim whose reply was lost is handed back before claiming
        assert len(links.started) == 1
    assert outage.failures == ["claims"] and not outage.down
    assert len(logs.of("database.down")) == 1 and len(logs.of("database.up")) == 1
    assert _methods(fake).count("reconcile") == 1  # not once claims go through


async def test_the_back_off_grows_with_each_failed_claim(fake: FakeBackend, links: _Links) -> None:
    fake.add_queue("q")
    fake.fail("job_claim", BackendUnavailableError("connection refused"), times=2)
    poll = 0.05
    producer = _producer(fake, links, poll_interval=poll)
    async with _running(producer):
        first, second, third = await fake.wait_calls("job_claim", 3)
    assert second.at - first.at >= poll and third.at - second.at >= 2 * poll


async def test_queue_changed_is_followed_at_once(fake: FakeBackend, links: _Links) -> None:
    fake.add_queue("q", concurrency=2)
    fake.seed(queue="q", count=6)
    producer = _producer(fake, links)
    async with _running(producer):
        await fake.wait_calls("job_claim", 1)
        producer.queue_changed(QueueRecord(name="q", concurrency=4, priority=50, paused=False))
        await fake.wait_calls("job_claim", 2)
        assert _demands(fake, 2) == [QueueDemand("q", 2)]  # the two more slots
        assert _methods(fake).count("queue_list") == 1  # followed as given, not read again
        producer.queue_changed(QueueRecord(name="q", concurrency=4, priority=50, paused=True))
        producer.release("q")
        producer.jobs_enqueued(["q"])
        await fake.wait_calls("writer_behind", 3)
        assert len(fake.calls_to("job_claim")) == 2  # paused: nothing claimed
        assert len(links.started) == 4


async def test_settings_changed_elsewhere_are_read_before_the_next_claim(fake: FakeBackend, links: _Links) -> None:
    fake.add_queue("a", concurrency=1, priority=10)
    fake.add_queue("b", concurrency=1, priority=20)
    fake.seed(queue="a", count=3)
    fake.seed(queue="b", count=3)
    producer = _producer(fake, links)
    async with _running(producer):
        await fake.wait_calls("job_claim", 1)
        assert _demands(fake, 1) == [QueueDemand("a", 1), QueueDemand("b", 1)]
        fake.add_queue("a", concurrency=2, priority=30)  # changed by another process
        producer.settings_changed()
        producer.release("a")
        producer.release("b")
        await fake.wait_calls("job_claim", 2)
        assert _methods(fake)[-3:] == ["queue_list", "writer_behind", "job_claim"]
        assert _demands(fake, 2) == [QueueDemand("b", 1), QueueDemand("a", 2)]
