"""Recovery: every way a job held by an engine that cannot finish it gets back to work.

Owns, in one place:
- registration under a worker id, and the **same-id takeover**: an earlier life of this id
  on this host whose process is gone (a crash, then a restart by systemd or a container
  runtime) is taken over as soon as its heartbeat has been quiet for two intervals, and its
  orphaned jobs are taken back at once (a pid alone proves nothing across containers that
  share a host name; a silent heartbeat does);
- **rescue** (the reaper): engines whose heartbeat is older than ``stale_after`` are deleted
  and every job they held goes back to ``waiting`` (or to ``failed``, if the attempt that
  died with its engine was its last). Any live engine may do it; the statement is idempotent;
- **revive**: this engine had been declared dead (no heartbeat) and its jobs rescued; the
  runs here are void, and stop;
- **claims that are gone or canceled**: within a poll, a run learns that its job was
  canceled elsewhere (it stops, canceled) or taken away (rescued, replaced, retried,
  deleted: it stops, and whatever it writes is refused);
- **lost claims**: jobs this engine holds in the database but runs nowhere (a claim whose
  reply was lost with its connection) go back to waiting.

Rescued and handed-back jobs keep their place in line (``available_at`` unchanged): they run
before newer jobs of the same priority. Every rescue and take-back is logged, with counts.

May call: the backend (engines and held jobs), the runner (``stop_all``, ``cancel``,
``let_go``, ``tokens``, ``undecided_claims``), and ``jobs_back`` (the producer's wake-up).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence

from .._backends._protocol import JobOutcome, RescueResult
from .._errors import BackendError, EngineIdInUseError
from .._events import EventKind, JobEvent
from .._log import Event, logger
from .._records import JobState
from ._runner import Runner
from ._services import Services

# Process-wide by nature: the incarnations at work in this process. Two engines of one process
# share host and pid, so only this tells a live sibling from an earlier life of the same id.
_LIVE: set[str] = set()


class Recovery:
    def __init__(self, services: Services, runner: Runner, *, jobs_back: Callable[[Sequence[str] | None], None],
                 trusted_for: Callable[[], float]) -> None:
        self._s = services
        self._runner = runner
        self._jobs_back = jobs_back
        self._trusted_for = trusted_for  # seconds this engine's own heartbeats have been succeeding
        self.rescued = 0

    # -- start-up -------------------------------------------------------------------------------

    async def register(self) -> None:
        """Register under the worker id, refusing an id a live engine holds (then ``take_back``)."""
        registration, backend, settings = self._s.registration, self._s.backend, self._s.settings
        quiet = 2 * settings.heartbeat_interval
        loop = asyncio.get_running_loop()
        deadline = loop.time() + quiet + settings.heartbeat_interval
        while True:
            existing = await backend.engine_get(registration.id)
            takeover = None
            if (
                existing is not None
                and existing.host == registration.host
                and existing.incarnation not in _LIVE
                and (existing.pid == registration.pid or not _pid_alive(existing.pid))
            ):
                takeover = existing.incarnation
            if await backend.engine_register(
                registration, stale_after=settings.stale_after, takeover_incarnation=takeover,
                takeover_quiet=quiet, now=self._s.clock.for_database(),
            ):
                _LIVE.add(registration.incarnation)
                break
            if takeover is None or loop.time() >= deadline:
                holder = await backend.engine_get(registration.id)
                where = f"pid {holder.pid} on {holder.host}, heartbeat at {holder.heartbeat_at:%H:%M:%S}" \
                    if holder else "?"
                raise EngineIdInUseError(
                    f"engine id {registration.id!r} is in use by a live engine ({where}); give this engine "
                    f"another worker_id, or wait {settings.stale_after:g}s after that one stopped"
                )
            await asyncio.sleep(settings.heartbeat_interval / 2)  # let the dead one's heartbeat age

    async def take_back(self) -> None:
        """Take back at once what an earlier life of this worker id left behind."""
        registration = self._s.registration
        result = await self._s.backend.job_rescue(engine_id=registration.id, retention=self._s.settings.retention,
                                                  now=self._s.clock.for_database())
        self._report(result, f"an earlier life of worker id {registration.id}", [registration.id])

    # -- the reaper ---------------------------------------------------------------------------------

    async def rescue(self) -> bool:
        """Return the jobs of dead engines to waiting (every reaper interval); False if it
        asked the database nothing."""
        if not self._s.backend.capabilities.shared:
            return False  # no other process can use this database: there is no other engine to rescue
        if self._trusted_for() < self._s.settings.stale_after:
            # This engine has just failed to reach the database itself (an outage, a lost
            # connection). Every engine's heartbeat may look stale now for the same reason:
            # judging them before they had `stale_after` to beat again would rescue the jobs
            # of live engines. Rescuing waits; crashed engines are rescued a little later.
            return False
        result = await self._s.backend.job_rescue(
            retention=self._s.settings.retention, stale_after=self._s.settings.stale_after,
            now=self._s.clock.for_database(),
        )
        dead = ", ".join(f"dead engine {e}" for e in result.dead_engines)
        self._report(result, dead or "engines no longer registered", result.dead_engines)
        return True

    def _report(self, result: RescueResult, whose: str, engines: list[str]) -> None:
        jobs = result.retried + result.failed + result.canceled
        if self._s.events.wants(EventKind.JOB_RESCUED):
            at = self._s.clock.now()
            for job in jobs:
                self._s.events.emit(JobEvent(kind=EventKind.JOB_RESCUED, at=at, engine_id=self._s.engine_id, job=job))
        if not jobs and not result.dead_engines:
            return
        self.rescued += len(jobs)
        logger.warning(
            "rescued %d job(s) of %s: %d back to waiting, %d failed for good (their last attempt died with "
            "its engine), %d canceled (as asked while they ran)", len(jobs), whose, len(result.retried),
            len(result.failed), len(result.canceled),
            extra={"event": Event.JOBS_RESCUED, "engines": engines,
                   "job_ids": [j.id for j in jobs], "failed_ids": [j.id for j in result.failed],
                   "canceled_ids": [j.id for j in result.canceled]},
        )
        # Jobs back in line, and keys a failed or canceled keyed job no longer holds: claim
        # now (a commit of this engine's own is no change its watch sees).
        freed = {j.queue for j in result.retried} | {j.queue for j in jobs if j.concurrency_key is not None}
        if freed:
            self._jobs_back(sorted(freed))

    # -- this engine's own claims -------------------------------------------------------------------

    def revived(self) -> None:
        """This engine had been declared dead and its jobs rescued: the runs here were claimed
        before that (claims need a fresh heartbeat), so their claims are void: stop them;
        their outcomes will be refused."""
        self._runner.stop_all()

    async def watch_claims(self) -> bool:
        """Runs whose job was canceled elsewhere stop, canceled; runs whose claim is gone stop.
        False if it asked the database nothing."""
        self._runner.report_overdue()
        claims = self._runner.undecided_claims()
        if not claims:
            return False
        for claim in await self._s.backend.job_claims_to_stop(claims):
            if claim.held:
                self._runner.cancel(claim.id)
            else:
                self._runner.let_go(claim.id, claim.token)
        return True

    async def hand_back_lost_claims(self) -> None:
        """Jobs this engine holds in the database but runs nowhere (a claim whose reply was
        lost with its connection) go back to waiting at once, keeping their place in line.
        Called by the producer between claims, so no claim of ours is in flight."""
        known = self._runner.tokens()
        lost = [h for h in await self._s.backend.job_held(self._s.engine_id) if h.token not in known]
        if not lost:
            return
        await self._s.backend.job_finish_many([
            JobOutcome(id=h.id, token=h.token, from_state=h.state, state=JobState.WAITING,
                       give_back_attempt=h.state is JobState.RUNNING)
            for h in lost
        ], retention=self._s.settings.retention, now=self._s.clock.for_database())
        logger.warning("handed back %d job(s) whose claim this engine had lost track of", len(lost),
                       extra={"event": Event.JOBS_HANDED_BACK, "job_ids": [h.id for h in lost]})
        self._jobs_back(None)

    async def unregister(self) -> None:
        try:
            await self._s.backend.engine_unregister(self._s.engine_id, self._s.registration.incarnation)
        except BackendError as exc:
            logger.warning("could not unregister engine %s: %s", self._s.engine_id, exc,
                           extra={"event": Event.COMPONENT_ERROR, "engine_id": self._s.engine_id})
        finally:
            _LIVE.discard(self._s.registration.incarnation)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
