"""The backend interface: every statement the engine needs, as entity-first verbs.

A backend owns SQL and connections and nothing else: no retries, no scheduling, no hooks.
Each method is one round trip (one statement, or one short transaction), set-based where
it takes many rows. Time-dependent methods take ``now``: ``None`` means the database clock.

Fencing: every write about an attempt names the job id, its claim token and the state it
expects; a write whose token no longer matches (the claim was reaped, handed back or taken
again) changes nothing and is reported as refused.

Write your own backend by implementing ``Backend`` and running the conformance suite in
``aiojobs_engine.testing.conformance`` against it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from .._records import CronRecord, EngineRecord, JobRecord, JobState, QueueRecord
from .._settings import Retention as Retention  # re-exported: part of this interface


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendCapabilities:
    dialect: str
    supports_notify: bool  # can wake other engines at once (LISTEN/NOTIFY; SQLite: a change watch)
    shared: bool  # other processes can open the same database
    transactional_enqueue: bool  # enqueue can join a caller's connection/transaction


@dataclass(slots=True, kw_only=True)
class JobInsert:
    """One row to insert, built from a validated request. Not frozen: a frozen dataclass is
    dearer to build, paid per job of a bulk enqueue; nothing changes an insert once built
    (docs/decisions/2026-11-23-hot-path-dataclasses-not-frozen.md)."""

    queue: str
    name: str
    args_json: str
    kwargs_json: str
    constructor_args_json: str
    meta_json: str
    retry_json: str | None
    priority: int
    max_attempts: int
    timeout: float | None
    delay: float | None = None  # available after ``now + delay``
    run_at: datetime | None = None  # or at this time; neither: at once
    unique_key: str | None = None
    unique_states: Sequence[JobState] = ()  # the states in which the job holds its key
    unique_replace: bool = False  # free the key from pending (and stuck running) holders first
    stuck_after: float | None = None  # replace: a holder running longer than this is stuck
    rescheduled_from: int | None = None
    keep: Mapping[str, float | None] = field(default_factory=dict)  # retention set on the job
    concurrency_key: str | None = None


@dataclass(frozen=True, slots=True)
class QueueDemand:
    """Claim at most ``limit`` jobs from ``queue``, and no more than leaves ``global_limit``
    jobs of the queue claimed or running across all engines, nor more than ``rate_limit``
    allows (both checked inside the claim)."""

    queue: str
    limit: int
    global_limit: int | None = None
    # At most rate_limit[0] starts in any window of rate_limit[1] seconds, across all
    # engines: the claim counts the window's starts and starts what it picks at once.
    rate_limit: tuple[int, float] | None = None
    # Per concurrency key, across all engines: at most concurrency_per_key jobs held, at most
    # rate_limit_per_key starts in any window. A key at its limit does not hold back the
    # queue's other keys; jobs with no key count under none.
    concurrency_per_key: int | None = None
    rate_limit_per_key: tuple[int, float] | None = None

    @property
    def per_key(self) -> bool:
        return self.concurrency_per_key is not None or self.rate_limit_per_key is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobClaim:
    """Claim for ``engine_id``. With ``incarnation``, only while that engine's row holds this
    incarnation and a heartbeat newer than ``fresh_within`` seconds: an engine that others
    may be about to declare dead takes nothing new."""

    engine_id: str
    demands: Sequence[QueueDemand]  # in queue-priority order
    now: datetime | None = None
    incarnation: str | None = None
    fresh_within: float | None = None
    # Jobs of these names start at once (the engine runs their body without waiting for
    # anything): they are claimed straight into ``running``, their attempt counted, saving
    # the start's round trip. The others are ``claimed`` and started with job_start_many.
    start_now: Sequence[str] = ()
    # Filled by the claim (an answer, not a request): for each rate-limited demand whose
    # window is full once the claim's starts are counted, the seconds until it allows a start
    # again, by the clock the claim used (per-key windows: the first of the keys that held
    # due jobs back). The engine claims for that queue again then.
    rate_waits: dict[str, float] = field(default_factory=dict, compare=False)
    # Also filled by the claim: queues whose claim stopped before it had looked at every due
    # job (a keyed claim that walks its keys a few pages at a time): claim them again at once.
    unfinished: set[str] = field(default_factory=set, compare=False)


@dataclass(frozen=True, slots=True)
class JobStart:
    """Mark a claimed job running: its attempt begins and is counted."""

    id: int
    token: str


@dataclass(frozen=True, slots=True)
class ActivityBucket:
    queue: str
    start: datetime  # the bucket's start
    completed: int
    failed: int


@dataclass(frozen=True, slots=True)
class HeldJob:
    id: int
    token: str
    state: JobState


@dataclass(frozen=True, slots=True)
class ClaimToStop:
    """A claim its engine should stop: a cancellation was asked for (``held``: the claim is
    still the job's), or the claim is gone (the job was rescued, replaced, canceled, retried
    or deleted meanwhile: whatever its run ends with is refused)."""

    id: int
    token: str
    held: bool


@dataclass(frozen=True, slots=True)
class StartedJob:
    id: int
    attempt: int
    attempted_at: datetime


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a batched write of starts and outcomes did: the jobs started (as in
    ``job_start_many``) and the ids whose outcome was accepted (as in ``job_finish_many``)."""

    started: list[StartedJob]
    accepted: set[int]


@dataclass(slots=True, kw_only=True)
class JobOutcome:
    """The end of an attempt (or of a claim that never started), fenced by its token.

    ``state`` is where the job goes: completed, failed, canceled, or waiting/snoozed with
    ``delay`` seconds until it is available again (``None``: ``available_at`` is kept, so a
    job handed back keeps its place in line). ``delete`` removes the row instead.
    Not frozen, as ``JobInsert``: the engine builds one per attempt on its hot path.
    """

    id: int
    token: str
    from_state: JobState
    state: JobState
    delete: bool = False
    result_json: str | None = None
    error_json: str | None = None  # appended to ``errors``
    delay: float | None = None
    give_back_attempt: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFilter:
    """Which jobs to list: newest first, ``before_id`` for the next page (keyset).

    ``search``: only jobs with a string or number, at any depth of their args, kwargs,
    constructor args or meta, that contains this text, ignoring case (ASCII letters at
    least: SQLite's ``lower()`` folds no other). Values, not the JSON text, so that both
    dialects match alike whatever their JSON spacing and escaping; not indexed: a scan,
    stopped at ``limit`` matches.
    """

    states: Sequence[JobState] = ()
    queues: Sequence[str] = ()
    names: Sequence[str] = ()
    limit: int = 100
    before_id: int | None = None
    search: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RescueResult:
    dead_engines: list[str] = field(default_factory=list)
    retried: list[JobRecord] = field(default_factory=list)  # back to waiting
    failed: list[JobRecord] = field(default_factory=list)  # attempts exhausted
    canceled: list[JobRecord] = field(default_factory=list)  # their cancellation had been asked for


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineRegistration:
    id: str
    incarnation: str  # random per start; tells a restart from a second live engine
    host: str
    pid: int
    queues: Sequence[str] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueChange:
    """Settings to store for a queue; ``None`` keeps the stored value (or the default).

    ``retention``: the states given get that many seconds (None: kept for ever);
    ``clear_retention`` makes every state follow the engine's settings again."""

    name: str
    concurrency: int | None = None
    priority: int | None = None
    paused: bool | None = None
    global_concurrency: int | None = None
    clear_global_concurrency: bool = False
    retention: Mapping[str, float | None] | None = None
    clear_retention: bool = False
    rate_limit: tuple[int, float] | None = None  # (starts, seconds)
    clear_rate_limit: bool = False
    concurrency_per_key: int | None = None
    clear_concurrency_per_key: bool = False
    rate_limit_per_key: tuple[int, float] | None = None  # (starts, seconds), per key
    clear_rate_limit_per_key: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CronSchedule:
    """A schedule's definition, as stored (its progress is the backend's to keep)."""

    name: str
    expression: str
    timezone: str
    job: str
    args_json: str
    kwargs_json: str
    options_json: str


class Heartbeat(enum.Enum):
    BEAT = "beat"  # the row was there and is fresh again
    REVIVED = "revived"  # the row had been reaped; it is back, the jobs it had were rescued
    LOST = "lost"  # another incarnation holds the id now: this engine must stop


class Listener(Protocol):
    """A live subscription to the backend's notifications."""

    async def check(self) -> None:
        """Raise BackendError if the subscription is dead (its connection was lost)."""
        ...

    async def wait_lost(self) -> None:
        """Return once the driver reports the connection gone (``check()`` then raises).

        Lets the notifier re-subscribe at once rather than at its next check; a connection
        that dies without a word (a network cut) is still only found by ``check()``.
        """
        ...

    async def close(self) -> None: ...


# Notification payloads: what happened, and to what.
NOTIFY_ENQUEUED = "enqueued"  # payload "enqueued:<queue>"
NOTIFY_CANCEL = "cancel"  # payload "cancel:<job id>"
NOTIFY_QUEUE = "queue"  # payload "queue:<queue>" (settings changed)
NOTIFY_CHANGED = "changed"  # payload "changed": someone else wrote, what is not known (SQLite)


class Backend(Protocol):
    """Storage for jobs, queues and engines. See the module docstring for the rules."""

    @property
    def capabilities(self) -> BackendCapabilities: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    # -- schema ---------------------------------------------------------------------------

    async def migrate(self) -> list[int]:
        """Apply pending migrations under a lock; return the versions applied."""
        ...

    async def schema_version(self) -> int:
        """The newest applied migration, 0 on an empty database."""
        ...

    @property
    def latest_version(self) -> int: ...

    # -- jobs -----------------------------------------------------------------------------

    async def job_insert_many(
        self, inserts: Sequence[JobInsert], *, now: datetime | None = None, connection: object | None = None,
        retention: Retention | None = None,
    ) -> list[JobRecord]:
        """Insert; records in the order given.

        A job with a unique key that another job holds (in one of that job's unique states)
        is not inserted: the holder's record stands in its place. With ``unique_replace``,
        holders that have not started, or run longer than ``stuck_after``, are canceled first,
        in the same transaction as the insert (if it fails, they are left as they were), and
        stop holding their key even if their unique states include canceled.
        """
        ...

    async def job_get(self, job_id: int) -> JobRecord | None: ...

    async def job_list(self, where: JobFilter) -> list[JobRecord]: ...

    async def job_claim(self, claim: JobClaim) -> list[JobRecord]:
        """Move due waiting/snoozed jobs to ``claimed`` with a fresh token each; never one job twice."""
        ...

    async def job_start_many(self, starts: Sequence[JobStart], *, now: datetime | None = None) -> list[StartedJob]:
        """``claimed → running``, attempt + 1; only the jobs whose token still matches.

        Idempotent: a job already running under the same token is returned as it is (a
        start resent after its reply was lost does not count the attempt twice)."""
        ...

    async def job_finish_many(
        self, outcomes: Sequence[JobOutcome], *, retention: Retention, now: datetime | None = None
    ) -> set[int]:
        """Record outcomes; return the ids whose write was accepted (token and state matched).

        A job whose cancellation was asked for while it ran is canceled instead of going
        back to waiting or snoozed."""
        ...

    async def job_write_many(
        self, starts: Sequence[JobStart], outcomes: Sequence[JobOutcome], *, retention: Retention,
        now: datetime | None = None,
    ) -> WriteResult:
        """``job_start_many`` and ``job_finish_many`` of different jobs in one call: one
        statement where the dialect allows (the engine's batched writes are both at once)."""
        ...

    async def job_cancel(self, job_id: int, *, retention: Retention, now: datetime | None = None) -> JobRecord | None:
        """Cancel a pending or claimed job at once; flag a running one for its engine."""
        ...

    async def job_claims_to_stop(self, claims: Sequence[JobStart]) -> list[ClaimToStop]:
        """Of these claims (an engine's runs), the ones to stop: a cancellation was asked
        for, or the claim no longer holds the job."""
        ...

    async def job_held(self, engine_id: str) -> list[HeldJob]:
        """Every job this engine holds (claimed or running), with its token."""
        ...

    async def job_retry(self, job_id: int, *, now: datetime | None = None) -> JobRecord | None:
        """Put a failed, canceled or completed job back to ``waiting``, available now.

        The record after the call (unchanged for a job in another state), None for an unknown
        id. A unique job whose key another job holds now is left as it is and
        ``UniqueConflictError`` names the holder."""
        ...

    async def job_snooze(self, job_id: int, *, delay: float, now: datetime | None = None) -> JobRecord | None:
        """Put a waiting or snoozed job aside: ``snoozed``, available ``delay`` seconds from now.

        The record after the call (unchanged for a job in another state), None for an unknown id."""
        ...

    async def job_delete(self, job_id: int) -> bool:
        """Delete a job that no engine holds (not claimed or running); False otherwise."""
        ...

    async def job_delete_where(self, states: Sequence[JobState], queues: Sequence[str]) -> int:
        """Delete jobs in these states (all when empty) of these queues (all when empty)."""
        ...

    async def job_count(
        self, *, now: datetime | None = None, due_only: bool = False
    ) -> Mapping[tuple[str, JobState], int]:
        """Job counts per (queue, state); with ``due_only``, pending jobs that are due."""
        ...

    async def job_activity(
        self, *, since: datetime, bucket: float, now: datetime | None = None
    ) -> list[ActivityBucket]:
        """Completed and failed jobs per queue and time bucket (``bucket`` seconds) since ``since``."""
        ...

    async def job_rescue(
        self, *, retention: Retention, stale_after: float | None = None, engine_id: str | None = None,
        now: datetime | None = None,
    ) -> RescueResult:
        """Return jobs of dead engines to ``waiting`` (or ``failed`` if their attempts are spent).

        With ``stale_after``: engines silent that long are deleted and their jobs, and jobs of
        engines with no row at all, rescued. With ``engine_id``: that engine's jobs. A job
        back in ``waiting`` keeps its ``available_at`` (its place in line); a backend that
        notifies announces ``enqueued:<queue>`` for each queue given a job back.
        """
        ...

    async def job_prune(self, *, limit: int, now: datetime | None = None) -> int:
        """Delete at most ``limit`` finished jobs past their expiry; return how many."""
        ...

    # -- queues ---------------------------------------------------------------------------

    async def queue_list(self) -> list[QueueRecord]: ...

    async def queue_upsert(self, change: QueueChange, *, now: datetime | None = None) -> QueueRecord: ...

    async def queue_running_counts(self, queues: Sequence[str]) -> Mapping[str, int]:
        """Claimed and running jobs per queue across every engine (for global caps)."""
        ...

    async def queue_delete(self, name: str) -> bool:
        """Delete the queue's stored settings if no job of the queue is stored, checked in the
        same statement; False if nothing was deleted (no settings, or jobs remain)."""
        ...

    # -- recurring schedules ------------------------------------------------------------------

    async def cron_upsert(self, schedule: CronSchedule, *, now: datetime | None = None) -> CronRecord:
        """Store a schedule's definition; a new one starts from ``now`` (no missed ticks)."""
        ...

    async def cron_delete(self, name: str) -> bool: ...

    async def cron_pause(self, name: str, paused: bool, *, now: datetime | None = None) -> CronRecord | None: ...

    async def cron_list(self) -> list[CronRecord]: ...

    async def cron_advance(self, name: str, tick: datetime, job_id: int | None) -> None:
        """Record ``tick`` as enqueued (as job ``job_id``), unless a later tick already is."""
        ...

    # -- engines --------------------------------------------------------------------------

    async def engine_register(
        self, registration: EngineRegistration, *, stale_after: float, takeover_incarnation: str | None,
        takeover_quiet: float = 0.0, now: datetime | None = None,
    ) -> bool:
        """Store the engine; False if another engine holds the id and is alive.

        The holder counts as dead when its heartbeat is older than ``stale_after``, or when
        it is ``takeover_incarnation`` (known dead to the caller) and its heartbeat is older
        than ``takeover_quiet`` seconds."""
        ...

    async def engine_get(self, engine_id: str) -> EngineRecord | None: ...

    async def engine_list(self) -> list[EngineRecord]: ...

    async def engine_heartbeat(self, registration: EngineRegistration, *, now: datetime | None = None) -> Heartbeat:
        """Refresh the heartbeat, re-creating the row if a reaper deleted it."""
        ...

    async def engine_unregister(self, engine_id: str, incarnation: str) -> None: ...

    # -- notifications (only where ``capabilities.supports_notify``) --------------------------

    async def listen(self, on_notify: Callable[[str], None]) -> Listener:
        """Subscribe; ``on_notify(payload)`` is called on the loop for each notification.

        Backends that notify send ``enqueued:<queue>`` once per queue per inserting (or
        rescuing) transaction, ``cancel:<id>`` when a running job's cancellation is asked
        for, and ``queue:<name>`` when a queue's settings change; a backend that can only
        tell that another connection wrote something sends ``changed`` instead.
        """
        ...
