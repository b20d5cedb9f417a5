"""The library logger and the names of the events it emits.

Every record carries ``extra={"event": NAME, ...}`` with job context (``job_id``,
``job_name``, ``queue``, ``attempt``) where there is one. Arguments are never logged.
The library only adds a ``NullHandler``: configuring output is the application's business.
"""

from __future__ import annotations

import logging
from typing import Final

logger: Final = logging.getLogger("aiojobs_engine")
logger.addHandler(logging.NullHandler())


class Event:
    """Event names, as they appear in the ``event`` field of log records."""

    ENGINE_STARTED: Final = "engine.started"
    ENGINE_STOPPING: Final = "engine.stopping"
    ENGINE_STOPPED: Final = "engine.stopped"
    ENGINE_CRASHED: Final = "engine.crashed"
    ENGINE_REVIVED: Final = "engine.revived"
    COMPONENT_ERROR: Final = "component.error"
    JOB_COMPLETED: Final = "job.completed"
    JOB_FAILED: Final = "job.failed"
    JOB_RETRYING: Final = "job.retrying"
    JOB_SNOOZED: Final = "job.snoozed"
    JOB_CANCELED: Final = "job.canceled"
    JOB_DELETED: Final = "job.deleted"
    JOB_DEFERRED: Final = "job.deferred"
    JOB_HANDED_BACK: Final = "job.handed_back"
    JOB_OUTCOME_REFUSED: Final = "job.outcome_refused"
    JOB_TIMEOUT_IGNORED: Final = "job.timeout_ignored"
    JOB_UNKNOWN: Final = "job.unknown"
    JOBS_RESCUED: Final = "jobs.rescued"
    JOBS_HANDED_BACK: Final = "jobs.handed_back"
    JOBS_PRUNED: Final = "jobs.pruned"
    HOOK_FAILED: Final = "hook.failed"
    HEARTBEAT_FAILED: Final = "heartbeat.failed"
    HEARTBEAT_SUSPENDED: Final = "heartbeat.suspended"
    LOOP_BLOCKED: Final = "loop.blocked"
    DATABASE_DOWN: Final = "database.down"
    DATABASE_UP: Final = "database.up"
    POOL_WORKER_DIED: Final = "pool.worker_died"
    POOL_WORKER_KILLED: Final = "pool.worker_killed"
    LISTENER_DOWN: Final = "listener.down"
    LISTENER_UP: Final = "listener.up"
    MIGRATION_APPLIED: Final = "migration.applied"
    CRON_ENQUEUED: Final = "cron.enqueued"
    CRON_SKIPPED: Final = "cron.skipped"
    CRON_FAILED: Final = "cron.failed"
    SUPERVISOR_STARTED: Final = "supervisor.started"
    SUPERVISOR_STOPPING: Final = "supervisor.stopping"
    SUPERVISOR_STOPPED: Final = "supervisor.stopped"
    SUPERVISOR_RESTARTING: Final = "supervisor.restarting"
    WORKER_SPAWNED: Final = "worker.spawned"
    WORKER_READY: Final = "worker.ready"
    WORKER_EXITED: Final = "worker.exited"
    WORKER_GAVE_UP: Final = "worker.gave_up"
    WORKER_ORPHANED: Final = "worker.orphaned"


ALL_EVENTS: Final = frozenset(
    value for key, value in vars(Event).items() if not key.startswith("_") and isinstance(value, str)
)


def job_extra(event: str, job_id: int, name: str, queue: str, attempt: int, **more: object) -> dict[str, object]:
    """The ``extra`` of a log record about one job."""
    return {"event": event, "job_id": job_id, "job_name": name, "queue": queue, "attempt": attempt, **more}
