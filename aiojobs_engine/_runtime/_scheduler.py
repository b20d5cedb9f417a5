"""The cron scheduler: enqueues each tick of each schedule exactly once, across all engines.

Every engine at work runs it. Once a second it reads the schedules and, for each one whose
tick has come since its ``last_tick``, inserts the tick's job with the unique key
``cron:<schedule>:<tick>`` held in every state: whichever engine inserts first wins, the
others' inserts come back as that job, so a tick is enqueued once however many engines race
(and however they crash between statements). Then ``last_tick`` moves on.

After every engine was down, only the newest missed tick runs; the earlier ones are
skipped and logged (no flood). Each run links to the one before it (``rescheduled_from``).

Owns: schedules' ticks. May call: the backend (schedules, inserts), ``on_before_add`` hooks,
and ``jobs_enqueued`` (the producer's wake-up) for the queues it enqueued to.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from .. import _json
from .._cron import due_tick
from .._errors import AiojobsError
from .._events import EventKind, JobEvent
from .._handles import build_request, with_added_meta
from .._hooks import run_hooks
from .._log import Event, logger
from .._options import JobOptions, make_options
from .._records import CronRecord, JobRecord, JobState
from ._inserts import insert_for
from ._services import Services


class Scheduler:
    def __init__(self, services: Services, jobs_enqueued: Callable[[Sequence[str]], None]) -> None:
        self._s = services
        self._jobs_enqueued = jobs_enqueued

    async def step(self) -> None:
        enqueued = await enqueue_due_ticks(self._s)
        if enqueued:
            self._jobs_enqueued(sorted({job.queue for job in enqueued}))


async def enqueue_due_ticks(services: Services, now: datetime | None = None) -> list[JobRecord]:
    """Enqueue every schedule's tick that has come; the jobs enqueued (or found enqueued)."""
    now = now or services.clock.now()
    enqueued = []
    for schedule in await services.backend.cron_list():
        if schedule.paused:
            continue
        after = schedule.last_tick or schedule.created_at or now
        due = due_tick(schedule.expression, schedule.timezone, after, now)
        if due is None:
            continue
        if due.skipped:
            logger.warning(
                "schedule %s missed %s tick(s) (no engine was running); running the latest, %s, only",
                schedule.name, f"{due.skipped}+" if due.skipped >= 1000 else due.skipped, due.tick.isoformat(),
                extra={"event": Event.CRON_SKIPPED, "schedule": schedule.name, "skipped": due.skipped},
            )
        job = await _enqueue_tick(services, schedule, due.tick)
        if job is not None:
            enqueued.append(job)
    return enqueued


async def _enqueue_tick(services: Services, schedule: CronRecord, tick: datetime) -> JobRecord | None:
    backend = services.backend
    try:
        definition = services.registry.get(schedule.job)
        options = make_options(schedule.options)
        if definition is not None:
            options = definition.options.merged(options)
        request = build_request(schedule.job, definition, options, tuple(schedule.args), dict(schedule.kwargs))
    except AiojobsError as exc:
        logger.error("schedule %s cannot enqueue job %s: %s; tick %s skipped", schedule.name, schedule.job, exc,
                     tick.isoformat(), extra={"event": Event.CRON_FAILED, "schedule": schedule.name})
        await backend.cron_advance(schedule.name, tick, None)
        return None
    hooks = services.hooks.on_before_add + (definition.hooks.on_before_add if definition else ())
    if hooks:
        answers = await run_hooks("on_before_add", hooks, request, extra={"event": "", "job_name": request.name})
        if any(answer is False for answer in answers):
            await backend.cron_advance(schedule.name, tick, None)
            return None
        try:
            request = with_added_meta(request, answers)
        except AiojobsError as exc:
            logger.error("schedule %s cannot enqueue job %s: an on_before_add hook returned bad meta: %s; tick %s "
                         "skipped", schedule.name, schedule.job, exc, tick.isoformat(),
                         extra={"event": Event.CRON_FAILED, "schedule": schedule.name})
            await backend.cron_advance(schedule.name, tick, None)
            return None
    insert = insert_for(
        request, services.clock.now(), unique_key=f"cron:{schedule.name}:{tick.isoformat()}",
        unique_states=tuple(JobState), rescheduled_from=schedule.last_job_id,
    )
    (job,) = await backend.job_insert_many([insert], now=services.clock.for_database(),
                                           retention=services.settings.retention)
    # Announced before the tick's progress is stored: should that fail, the next try finds
    # the job existing and stays silent, so this is the one chance.
    if services.events.wants(EventKind.JOB_ENQUEUED) and not job.existing:
        services.events.emit(JobEvent(kind=EventKind.JOB_ENQUEUED, at=services.clock.now(), job=job))
    await backend.cron_advance(schedule.name, tick, job.id)
    logger.info("schedule %s enqueued job %s for its tick %s", schedule.name, job.id, tick.isoformat(),
                extra={"event": Event.CRON_ENQUEUED, "schedule": schedule.name, "job_id": job.id})
    return job


def options_json(options: JobOptions) -> str:
    """A schedule's stored options (only what can be stored: queue, priority, limits, meta)."""
    stored: dict[str, object] = {}
    for name in ("queue", "priority", "max_attempts", "meta"):
        value = getattr(options, name)
        if value is not None:
            stored[name] = dict(value) if name == "meta" else value
    if options.timeout_set:
        stored["timeout"] = options.timeout
    return _json.dumps(stored, "schedule options")
