"""What the database stores, as immutable Python values: jobs, queues and engines.

Times are timezone-aware UTC datetimes; ``args`` and ``constructor_args`` are lists and
``kwargs`` a dict, empty when none were given.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict


class JobState(enum.StrEnum):
    """Where a job is in its lifecycle.

    ``waiting → claimed → running → completed | failed | canceled``; a failed attempt with
    attempts left goes back to ``waiting`` with a later ``available_at``; ``snoozed`` jobs
    are claimable again once their ``available_at`` has come.
    """

    WAITING = "waiting"
    CLAIMED = "claimed"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    SNOOZED = "snoozed"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def is_pending(self) -> bool:
        """Not started yet, or waiting to run again."""
        return self in (JobState.WAITING, JobState.SNOOZED)


_TERMINAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELED})


class JobErrorInfo(TypedDict):
    """One failed attempt, as appended to ``JobRecord.errors``."""

    name: str
    message: str
    traceback: str | None
    attempt: int
    attempted_by: str | None
    attempted_at: datetime | None


@dataclass(slots=True, kw_only=True)
class JobRecord:
    """A job as stored, at the moment it was read: a snapshot (changing it changes nothing).

    Not frozen, on purpose: the engine builds one per claimed job on its hot path, and a
    frozen dataclass is dearer to build (docs/decisions/2026-11-23-hot-path-dataclasses-not-frozen.md).
    """

    id: int
    queue: str
    name: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    constructor_args: list[Any] = field(default_factory=list)
    state: JobState
    priority: int
    attempt: int
    max_attempts: int
    timeout: float | None
    inserted_at: datetime
    available_at: datetime
    claimed_at: datetime | None = None
    attempted_at: datetime | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    canceled_at: datetime | None = None
    claimed_by: str | None = None
    result: Any = None
    errors: list[JobErrorInfo] = field(default_factory=list)
    unique_key: str | None = None
    rescheduled_from: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # The job's concurrency key: a queue's concurrency_per_key and rate_limit_per_key count
    # the jobs of each key apart (None: the job counts under no key).
    concurrency_key: str | None = None
    cancel_requested: bool = False
    retry: dict[str, Any] | None = field(default=None, repr=False)  # a backoff policy set at enqueue
    # Internal: why the stored row could not be read in full (the job then fails for good).
    corrupt: str | None = field(default=None, repr=False, compare=False)
    # Internal: the fencing token of the current claim; never shown to users' code as API.
    claim_token: str | None = field(default=None, repr=False, compare=False)
    # Internal: an enqueue returned this existing job in place of a unique one it did not insert.
    existing: bool = field(default=False, repr=False, compare=False)

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal


# JobRecord fields that are the engine's bookkeeping, not the job's data: never shown.
INTERNAL_JOB_FIELDS = frozenset({"corrupt", "claim_token", "existing"})


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueRecord:
    """A queue's stored settings: every engine working the queue follows them."""

    name: str
    concurrency: int
    priority: int
    paused: bool
    global_concurrency: int | None = None
    updated_at: datetime | None = None
    # Retention set on this queue, in seconds (None: kept for ever); a state not listed
    # follows the engine's settings.
    retention: dict[str, float | None] = field(default_factory=dict)
    # At most this many starts in any window of this many seconds, across all engines.
    rate_limit: tuple[int, float] | None = None
    # At most this many jobs of one concurrency key held (claimed or running) at once.
    concurrency_per_key: int | None = None
    # At most this many starts of one concurrency key in any window of this many seconds.
    rate_limit_per_key: tuple[int, float] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineRecord:
    """A registered engine and its last heartbeat."""

    id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    queues: list[str] | None = None
    incarnation: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class CronRecord:
    """A recurring schedule: which job it enqueues, how often, and how far it has got."""

    name: str
    expression: str
    timezone: str
    job: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    paused: bool = False
    last_tick: datetime | None = None  # the newest tick enqueued
    last_job_id: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    next_tick: datetime | None = None  # computed by the engine when listing
