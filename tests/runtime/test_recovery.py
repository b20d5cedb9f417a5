"""Recovery: the same-id takeover at start-up, the reaper, claims canceled or gone, and
claims this engine lost track of. Every job taken back keeps its place in line, is logged
with counts, and wakes the producer."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Sequence
from dataclasses import replace

import pytest

from aiojobs_engine._definitions import Registry
from aiojobs_engine._errors import BackendUnavailableError, EngineIdInUseError
from aiojobs_engine._events import EventKind, JobEvent
from aiojobs_engine._records import JobState
from aiojobs_engine._runtime._recovery import Recovery
from aiojobs_engine._runtime._services import Services

from ._fake import FakeBackend
from ._support import ENGINE_ID, Logs, RunnerRig, declare

W, R, X, F, C, D = (JobState.WAITING, JobState.RUNNING, JobState.CLAIMED, JobState.FAILED, JobState.COMPLETED,
                    JobState.CANCELED)


def _dead_pid() -> int:
    with open("/proc/sys/kernel/pid_max") as limit:
        return int(limit.read()) + 1  # no process can have it


class _Woken:
    """Stands for the producer's ``jobs_enqueued``."""

    def __init__(self) -> None:
        self.calls: list[Sequence[str] | None] = []

    def __call__(self, queues: Sequence[str] | None) -> None:
        self.calls.append(queues)


def _recovery(services: Services, rig: RunnerRig, trusted_for: float = float("inf")) -> tuple[Recovery, _Woken]:
    woken = _Woken()
    return Recovery(services, rig.runner, jobs_back=woken, trusted_for=lambda: trusted_for), woken


def _shared(fake: FakeBackend) -> None:
    fake.capabilities = replace(fake.capabilities, shared=True)


# -- start-up: the same id, an earlier life -------------------------------------------------------


async def test_register_takes_over_a_dead_earlier_life_and_takes_its_jobs_back(
        services: Services, fake: FakeBackend, rig: RunnerRig, logs: Logs) -> None:
    fake.add_engine(ENGINE_ID, incarnation="life-0", host=socket.gethostname(), pid=_dead_pid(),
                    beat_ago=0.4)  # quiet for two heartbeats, not yet stale (0.6 s)
    never_started, = fake.seed(state=X, claimed_by=ENGINE_ID, available_in=-60)
    started, = fake.seed(state=R, attempt=1, claimed_by=ENGINE_ID, available_in=-50)
    spent, = fake.seed(state=R, attempt=3, max_attempts=3, claimed_by=ENGINE_ID, queue="other")
    elsewhere, = fake.seed(state=R, attempt=1, claimed_by="engine-2")
    recovery, woken = _recovery(services, rig)
    await recovery.register()
    try:
        assert fake.engines[ENGINE_ID].incarnation == "life-1"
        assert fake.job(started.id).state is R  # registering takes nothing back by itself
        await recovery.take_back()
        assert [(fake.job(j.id).state, fake.job(j.id).attempt) for j in (never_started, started, spent)] == [
            (W, 0), (W, 1), (F, 3)]
        assert all(fake.job(j.id).available_at == j.available_at for j in (never_started, started))
        assert fake.job(elsewhere.id) == elsewhere
        (line,) = logs.of("jobs.rescued")
        assert line.getMessage().startswith("rescued 3 job(s) of an earlier life of worker id engine-1: "
                                            "2 back to waiting, 1 failed for good")
        assert line.engines == [ENGINE_ID]  # type: ignore[attr-defined]
        assert line.job_ids == [never_started.id, started.id, spent.id]  # type: ignore[attr-defined]
        assert line.failed_ids == [spent.id]  # type: ignore[attr-defined]
        assert woken.calls == [["q"]]  # the queues given a job back, once
    finally:
        await recovery.unregister()


async def test_register_waits_for_the_dead_life_to_fall_quiet(
        services: Services, fake: FakeBackend, rig: RunnerRig) -> None:
    fake.add_engine(ENGINE_ID, incarnation="life-0", host=socket.gethostname(), pid=_dead_pid(), beat_ago=0.0)
    recovery, _ = _recovery(services, rig)
    registering = asyncio.create_task(recovery.register())
    await fake.wait_calls("engine_register", 1)
    assert fake.engines[ENGINE_ID].incarnation == "life-0"  # it beat just now: not yet
    fake.clock.advance(0.3)  # its heartbeat ages past two intervals
    await asyncio.wait_for(registering, 2)
    try:
        assert fake.engines[ENGINE_ID].incarnation == "life-1"
        assert len(fake.calls_to("engine_register")) == 2
    finally:
        await recovery.unregister()


async def test_register_refuses_an_id_a_live_engine_holds(
        services: Services, fake: FakeBackend, rig: RunnerRig) -> None:
    fake.add_engine(ENGINE_ID, incarnation="life-0", host=socket.gethostname(), pid=os.getppid(), beat_ago=0.4)
    (held,) = fake.seed(state=R, attempt=1, claimed_by=ENGINE_ID)
    recovery, woken = _recovery(services, rig)
    with pytest.raises(EngineIdInUseError, match=f"in use by a live engine \\(pid {os.getppid()}"):
        await recovery.register()
    assert fake.engines[ENGINE_ID].incarnation == "life-0"
    assert fake.calls_to("job_rescue") == [] and fake.job(held.id) == held and woken.calls == []


# -- the reaper ---------------------------------------------------------------------------------------


async def test_rescue_waits_while_this_engines_own_heartbeat_was_failing(
        services: Services, fake: FakeBackend, rig: RunnerRig) -> None:
    _shared(fake)
    fake.add_engine("engine-2", incarnation="x", host="elsewhere", pid=1, beat_ago=5.0)
    (held,) = fake.seed(state=R, attempt=1, claimed_by="engine-2")
    trusted = 0.5
    recovery = Recovery(services, rig.runner, jobs_back=_Woken(), trusted_for=lambda: trusted)
    await recovery.rescue()
    assert fake.calls_to("job_rescue") == [] and fake.job(held.id) == held
    trusted = services.settings.stale_after  # its heartbeats have been going through that long
    await recovery.rescue()
    assert fake.job(held.id).state is W


async def test_rescue_returns_the_jobs_of_dead_engines_logs_them_and_wakes_the_producer(
        services: Services, fake: FakeBackend, rig: RunnerRig, logs: Logs) -> None:
    _shared(fake)
    fake.add_engine("engine-2", incarnation="x", host="elsewhere", pid=1, beat_ago=1.0)
    fake.add_engine("engine-3", incarnation="y", host="elsewhere", pid=2, beat_ago=0.1)
    dead_a, = fake.seed(state=R, attempt=1, claimed_by="engine-2", queue="b", available_in=-10)
    dead_b, = fake.seed(state=X, claimed_by="engine-2", queue="a")
    orphan, = fake.seed(state=R, attempt=1, claimed_by="engine-gone", queue="a")
    alive, = fake.seed(state=R, attempt=1, claimed_by="engine-3")
    unwanted, = fake.seed(state=R, attempt=1, claimed_by="engine-2", queue="c")
    fake.request_cancel(unwanted.id)  # canceled while it ran: not failed, not retried
    rescued: list[JobEvent] = []
    services.events.subscribe(rescued.append, kinds=[EventKind.JOB_RESCUED])
    recovery, woken = _recovery(services, rig)
    await recovery.rescue()
    assert [fake.job(j.id).state for j in (dead_a, dead_b, orphan, alive)] == [W, W, W, R]
    assert fake.job(unwanted.id).state is JobState.CANCELED
    assert fake.job(dead_a.id).available_at == dead_a.available_at
    assert "engine-2" not in fake.engines and "engine-3" in fake.engines
    (line,) = logs.of("jobs.rescued")
    assert "of dead engine engine-2: 3 back to waiting, 0 failed for good" in line.getMessage()
    assert line.engines == ["engine-2"]  # type: ignore[attr-defined]  # (the dead one, not the rescuer)
    assert "1 canceled" in line.getMessage()
    assert sorted(line.job_ids) == sorted([dead_a.id, dead_b.id, orphan.id, unwanted.id])  # type: ignore[attr-defined]
    assert line.failed_ids == [] and line.canceled_ids == [unwanted.id]  # type: ignore[attr-defined]
    assert woken.calls == [["a", "b"]]  # only the queues that got a job back
    assert sorted(e.job.id for e in rescued if e.job) == sorted([dead_a.id, dead_b.id, orphan.id, unwanted.id])
    assert recovery.rescued == 4
    await recovery.rescue()  # nothing left: no line, no wake-up
    assert len(logs.of("jobs.rescued")) == 1 and len(woken.calls) == 1


async def test_rescue_is_skipped_where_no_other_process_can_use_the_database(
        services: Services, fake: FakeBackend, rig: RunnerRig) -> None:
    recovery, _ = _recovery(services, rig)
    await recovery.rescue()
    assert fake.calls_to("job_rescue") == []


# -- this engine's own claims -------------------------------------------------------------------------


async def test_watch_claims_cancels_canceled_claims_and_lets_go_of_gone_ones(
        services: Services, fake: FakeBackend, rig: RunnerRig, registry: Registry) -> None:
    release = asyncio.Event()
    began: list[str] = []

    async def work(name: str) -> str:
        began.append(name)
        await release.wait()
        return name

    declare(registry, work)
    canceled, = fake.seed("work", args=["canceled"])
    gone, = fake.seed("work", args=["gone"])
    kept, = fake.seed("work", args=["kept"])
    recovery, _ = _recovery(services, rig)
    await recovery.watch_claims()
    assert fake.calls_to("job_claims_to_stop") == []  # nothing runs here: nothing to ask
    await rig.claim(limit=3)
    fake.request_cancel(canceled.id)  # asked elsewhere while it runs
    fake.take_away(gone.id)  # rescued elsewhere
    taken = fake.job(gone.id)
    await recovery.watch_claims()
    (call,) = fake.calls_to("job_claims_to_stop")
    assert sorted(c.id for c in call.args["claims"]) == [canceled.id, gone.id, kept.id]
    release.set()
    await rig.idle()
    # Stopped before its task first ran: its body never began (the claim had counted the attempt).
    assert fake.job(canceled.id).state is D
    assert fake.job(canceled.id).errors[-1]["message"] == "canceled before it started"
    assert began == ["kept"]  # the other two were stopped before their bodies began
    assert fake.job(gone.id) == taken  # its run stopped; what it wrote was refused
    assert fake.job(kept.id).state is C and fake.job(kept.id).result == "kept"


async def test_hand_back_lost_claims_gives_back_only_claims_the_runner_does_not_know(
        services: Services, fake: FakeBackend, rig: RunnerRig, registry: Registry, logs: Logs) -> None:
    release = asyncio.Event()

    async def work() -> None:
        await release.wait()

    declare(registry, work)
    fake.seed("work")
    (known,) = await rig.claim()
    lost_claimed, = fake.seed(state=X, claimed_by=ENGINE_ID, available_in=-30)
    lost_running, = fake.seed(state=R, attempt=1, claimed_by=ENGINE_ID, available_in=-20)
    theirs, = fake.seed(state=R, attempt=1, claimed_by="engine-2")
    recovery, woken = _recovery(services, rig)
    await recovery.hand_back_lost_claims()
    (call,) = fake.calls_to("job_finish_many")
    assert sorted(o.id for o in call.args["outcomes"]) == [lost_claimed.id, lost_running.id]
    assert all(o.delay is None for o in call.args["outcomes"])  # their place in line kept
    for lost in (lost_claimed, lost_running):
        job = fake.job(lost.id)
        assert (job.state, job.attempt, job.available_at) == (W, 0, lost.available_at)
    assert fake.job(known.id).state is R and fake.job(theirs.id) == theirs
    (line,) = logs.of("jobs.handed_back")
    assert sorted(line.job_ids) == [lost_claimed.id, lost_running.id]  # type: ignore[attr-defined]
    assert woken.calls == [None]
    await recovery.hand_back_lost_claims()  # none lost now: no write, no wake-up
    assert len(fake.calls_to("job_finish_many")) == 1 and woken.calls == [None]
    release.set()


async def test_revived_stops_every_run_whose_claim_was_voided(
        services: Services, fake: FakeBackend, rig: RunnerRig, registry: Registry) -> None:
    async def work() -> None:
        await asyncio.Event().wait()

    declare(registry, work)
    jobs = fake.seed("work", count=2)
    await rig.claim(limit=2)
    for job in jobs:
        fake.take_away(job.id)  # this engine was declared dead, and its jobs rescued
    recovery, _ = _recovery(services, rig)
    recovery.revived()
    await rig.idle()
    assert all(fake.job(j.id).state is W and fake.job(j.id).attempt == 1 for j in jobs)  # nothing written over
    assert all(len(fake.outcomes_for(j.id)) == 1 for j in jobs)


async def test_unregister_logs_a_failure_and_carries_on(
        services: Services, fake: FakeBackend, rig: RunnerRig, logs: Logs) -> None:
    recovery, _ = _recovery(services, rig)
    await recovery.register()
    fake.fail("engine_unregister", BackendUnavailableError("connection refused"))
    await recovery.unregister()
    assert "could not unregister" in logs.of("component.error")[0].getMessage()
    assert ENGINE_ID in fake.engines  # left for the reaper
