"""Helpers for testing code that enqueues and runs jobs (no pytest needed).

    from aiojobs_engine.testing import assert_enqueued, inline, workoff

    await signup(user_id=42)                            # the code under test enqueues
    await assert_enqueued(send_welcome, args=[42])      # ... this job, with these arguments
    assert await workoff(engine) == 1                   # run what is due

- **Enqueue assertions**: ``all_enqueued``, ``assert_enqueued``, ``refute_enqueued`` read the
  engine's database (pending jobs by default: ``waiting`` and ``snoozed``).
- **Running jobs**: ``workoff(engine)`` is ``engine.workoff()``; ``workoff(engine,
  include_delayed=True)`` also runs delayed jobs, retries in backoff and snoozed jobs by
  moving the engine's ``FrozenClock`` to each one's ``available_at`` in turn. ``drain`` is
  the same function under its earlier name.
- **Moving time**: ``advance(engine, seconds)`` moves a ``FrozenClock`` forward, running
  what comes due on the way (and cron ticks with ``schedules=True``); ``tick(engine)`` moves
  it to the next cron tick, enqueues the tick's job and runs it.
- **Inline mode**: inside ``with inline(engine):`` every ``enqueue()`` runs the due jobs
  before it returns.
- **One body, here and now**: ``await run_job(send_welcome, 42)`` runs the job's body once,
  as an attempt would run (its arguments through JSON, ``current_job()`` set, its timeout),
  and returns its result or raises what it raised; nothing is stored.

The pytest plugin (``aiojobs_engine.pytest_plugin``, loaded by pytest when aiojobs_engine is
installed) adds fixtures that put the application's engine on a throwaway database.
This module uses the public API only, apart from the three places marked below.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Final, ParamSpec, TypeAlias, TypeVar, overload

from . import (
    ClassJobHandle,
    Complete,
    ConfigurationError,
    Engine,
    EngineStateError,
    FrozenClock,
    Job,
    JobContext,
    JobHandle,
    JobRecord,
    JobRequest,
    JobState,
    JobTimeoutError,
    _json,
    current_job,
)
from ._context import set_current_job
from ._daemon import on_daemon_thread

__all__ = [
    "FAST_SETTINGS",
    "PENDING",
    "JobRef",
    "advance",
    "all_enqueued",
    "assert_enqueued",
    "drain",
    "inline",
    "refute_enqueued",
    "run_job",
    "tick",
    "workoff",
]

JobRef: TypeAlias = JobHandle[..., Any] | ClassJobHandle[..., Any] | type[Job] | str
"""A job: its handle (``send_welcome``, ``send_welcome.options(...)``), its class, or its name."""

StateFilter: TypeAlias = JobState | str | Sequence[JobState | str] | None

PENDING: Final = (JobState.WAITING, JobState.SNOOZED)
"""The states of a job that is enqueued and has not run for good yet (the default filter)."""

FAST_SETTINGS: Final[Mapping[str, float]] = {
    "poll_interval": 0.05,
    "heartbeat_interval": 0.1,
    "stale_after": 0.6,
    "reaper_interval": 0.1,
    "shutdown_grace": 3.0,
}
"""Engine settings for tests: short intervals, so polling and recovery happen within a test."""

RUN_JOB_ENGINE_ID: Final = "aiojobs_engine.testing"
"""``current_job().engine_id`` (and the record's ``claimed_by``) inside ``run_job``."""

_PAGE: Final = 1000

P = ParamSpec("P")
T = TypeVar("T")


# -- what was enqueued ------------------------------------------------------------------------


async def all_enqueued(job: JobRef | None = None, *, engine: Engine | None = None, queue: str | None = None,
                       args: Sequence[object] | None = None, kwargs: Mapping[str, object] | None = None,
                       meta: Mapping[str, object] | None = None, state: StateFilter = PENDING) -> list[JobRecord]:
    """The jobs matching every filter given, oldest first.

    ``job``: a handle, a ``Job`` class or a name (the engine comes from a handle or class;
    pass ``engine=`` with a name or no job). ``args`` must equal the stored positional
    arguments (tuples compare as lists); ``kwargs`` and ``meta`` match when every key given
    has the value given (others may be present). ``state``: pending jobs by default
    (``waiting``, ``snoozed``: delayed jobs and retries in backoff included); a state or a
    list of states; ``None`` for any state.
    """
    engine = _engine_for(job, engine)
    name = None if job is None else _name_of(job)
    records = await _list(engine, state=_states(state), queue=queue, name=name)
    return [record for record in records if _matches(record, args, kwargs, meta)]


async def assert_enqueued(job: JobRef | None = None, *, engine: Engine | None = None, queue: str | None = None,
                          args: Sequence[object] | None = None, kwargs: Mapping[str, object] | None = None,
                          meta: Mapping[str, object] | None = None, count: int | None = None,
                          state: StateFilter = PENDING) -> list[JobRecord]:
    """Fail (``AssertionError``) unless jobs matching the filters are enqueued: at least one,
    or exactly ``count``. Returns the matching records, oldest first. Filters as ``all_enqueued``.
    """
    _check_count(count)
    found = await all_enqueued(job, engine=engine, queue=queue, args=args, kwargs=kwargs, meta=meta, state=state)
    if (count is None and found) or (count is not None and len(found) == count):
        return found
    expected = "at least one" if count is None else "no" if count == 0 else f"exactly {count}"
    what = _describe_filter(job, queue, args, kwargs, meta, state, plural=count is not None and count > 1)
    message = f"expected {expected} {what}; found {len(found) or 'none'}"
    if found:
        raise AssertionError(message + _listing("matching", found))
    raise AssertionError(message + await _what_is_there(job, _engine_for(job, engine), state))


async def refute_enqueued(job: JobRef | None = None, *, engine: Engine | None = None, queue: str | None = None,
                          args: Sequence[object] | None = None, kwargs: Mapping[str, object] | None = None,
                          meta: Mapping[str, object] | None = None, state: StateFilter = PENDING) -> None:
    """Fail (``AssertionError``) if any job matches the filters (as ``all_enqueued``)."""
    found = await all_enqueued(job, engine=engine, queue=queue, args=args, kwargs=kwargs, meta=meta, state=state)
    if found:
        what = _describe_filter(job, queue, args, kwargs, meta, state)
        raise AssertionError(f"expected no {what}; found {len(found)}" + _listing("matching", found))


# -- running jobs, moving time ------------------------------------------------------------------


async def workoff(engine: Engine, *, include_delayed: bool = False, max_steps: int = 1000) -> int:
    """Run jobs until none is left to run; the number of attempts run (also named ``drain``).

    Without ``include_delayed`` this is ``engine.workoff()``: every job that is due now.
    With it, jobs whose ``available_at`` is in the future (delays, retries in backoff,
    snoozes) run too: the engine's ``FrozenClock`` is moved to each one's time in turn, so
    retries and snoozes play out as they would over real time (a job that fails every
    time ends ``failed`` after its ``max_attempts``). Needs ``Engine(clock=FrozenClock())``
    (or ``configure(clock=...)``). Jobs of paused queues, and of queues this engine does
    not work, are left alone. Raises ``AssertionError`` if jobs keep coming back after
    ``max_steps`` moves of the clock (a job that snoozes for ever).
    """
    if not include_delayed:
        return await engine.workoff()
    _frozen_clock(engine, "workoff(include_delayed=True)")
    return await _run_until(engine, None, schedules=False, max_steps=max_steps)


drain = workoff
"""``workoff`` under its earlier name: the same function, kept working."""


async def advance(engine: Engine, by: float | timedelta, *, schedules: bool = False,
                  max_steps: int = 1000) -> int:
    """Move the engine's ``FrozenClock`` forward by ``by`` seconds, running what comes due
    on the way, in time order, each at its own time; the number of attempts run.

    A job retried every 10 s runs about six times in ``advance(engine, 60)``. With
    ``schedules=True``, cron ticks on the way are enqueued at their times too (what engines
    at work do), and their jobs run. The clock ends at ``now + by``. Raises
    ``AssertionError`` after ``max_steps`` moves of the clock.
    """
    clock = _frozen_clock(engine, "advance()")
    delta = by if isinstance(by, timedelta) else timedelta(seconds=by)
    if delta < timedelta(0):
        raise ConfigurationError(f"advance() moves time forward only; got {by!r}")
    return await _run_until(engine, clock.now() + delta, schedules=schedules, max_steps=max_steps)


async def tick(engine: Engine, schedule: str | None = None, *, run: bool = True) -> list[JobRecord]:
    """Move the engine's ``FrozenClock`` to the next tick of ``schedule`` (default: the next
    tick of any active schedule), enqueue the jobs due then, and with ``run`` (the default)
    run what is due. Returns the jobs the tick enqueued, as enqueued.

    To enqueue due ticks without moving time, call ``engine.enqueue_due_schedules()``.
    """
    clock = _frozen_clock(engine, "tick()")
    async with engine:
        schedules = [s for s in await engine.list_schedules() if s.next_tick is not None]
        if schedule is not None:
            schedules = [s for s in schedules if s.name == schedule]
            if not schedules:
                raise ConfigurationError(f"no active schedule named {schedule!r}")
        if not schedules:
            raise ConfigurationError("there is no active schedule to tick")
        clock.set(min(s.next_tick for s in schedules if s.next_tick is not None))
        enqueued = await engine.enqueue_due_schedules()
        if run:
            await engine.workoff()
        return enqueued


async def _run_until(engine: Engine, horizon: datetime | None, *, schedules: bool, max_steps: int) -> int:
    """Step a FrozenClock from event to event (a job's ``available_at``, a cron tick) up to
    ``horizon`` (None: until nothing is left), running what is due at each step."""
    clock = _frozen_clock(engine, "this helper")
    ran = 0
    async with engine:
        for _ in range(max_steps):
            if schedules:
                await engine.enqueue_due_schedules()
            ran += await engine.workoff()
            upcoming = [t for t in (await _next_available(engine), await _next_tick(engine, schedules))
                        if t is not None and t > clock.now()]
            if not upcoming or (horizon is not None and min(upcoming) > horizon):
                if horizon is not None and horizon > clock.now():
                    clock.set(horizon)
                    if schedules:
                        await engine.enqueue_due_schedules()
                    ran += await engine.workoff()
                return ran
            clock.set(min(upcoming))
    raise AssertionError(
        f"jobs kept coming due after {max_steps} steps of the clock (now {clock.now().isoformat()}): "
        "a job that snoozes or retries for ever, or a schedule ticking more often than the time allows?"
    )


async def _next_available(engine: Engine) -> datetime | None:
    """The earliest ``available_at`` of a pending job this engine would run."""
    worked = engine.queues
    paused = {q.name for q in await engine.list_queues() if q.paused}
    times = [r.available_at for r in await _list(engine, state=list(PENDING), queue=None, name=None)
             if r.queue not in paused and (worked is None or r.queue in worked)]
    return min(times, default=None)


async def _next_tick(engine: Engine, schedules: bool) -> datetime | None:
    if not schedules:
        return None
    return min((s.next_tick for s in await engine.list_schedules() if s.next_tick is not None), default=None)


def _frozen_clock(engine: Engine, what: str) -> FrozenClock:
    clock = engine.clock
    if not isinstance(clock, FrozenClock):
        raise ConfigurationError(
            f"{what} moves the engine's clock, so it needs Engine(clock=FrozenClock(...)) or "
            f"engine.configure(clock=FrozenClock(...)); this engine's clock is a {type(clock).__name__}"
        )
    return clock


# -- one body, here and now ------------------------------------------------------------------


@overload
async def run_job(job: JobHandle[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs) -> T: ...
@overload
async def run_job(job: JobHandle[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T: ...
@overload
async def run_job(job: ClassJobHandle[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs) -> T: ...
@overload
async def run_job(job: ClassJobHandle[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T: ...
@overload
async def run_job(job: type[Job], /, *args: object, **kwargs: object) -> object: ...
async def run_job(job: object, /, *args: object, **kwargs: object) -> object:
    """Run one attempt of ``job``'s body in this task's loop and return its result.

    The body runs as an engine runs it, not as a plain call: the arguments are validated
    and encoded as ``enqueue()`` would, and the body gets them back from JSON (tuples as
    lists); ``current_job()`` gives a ``JobRecord`` built from the request (state
    ``running``, attempt 1, id 0: it is not stored, and the engine's database is not
    touched); a ``Job`` class is instantiated with its ``constructor_args``
    (``MyJob.options(constructor_args=[...])``); an async body runs under the job's
    ``timeout`` (``JobTimeoutError``), a blocking or CPU-bound one on a thread of its own.
    ``Complete(result)`` returns ``result``; any other signal (``Retry``, ``Snooze``,
    ``Fail``, ``Cancel``, ``Delete``) and any error are raised to the caller, as they
    left the body. A result that is not JSON raises ``SerializationError`` (the engine
    would fail the job). Hooks and context hooks do not run.
    """
    request = _request_for(job, args, kwargs)
    definition = request.definition
    if definition is None:  # pragma: no cover - handles and classes always carry theirs
        raise ConfigurationError(f"job {request.name!r} is not declared on an engine")
    engine = _engine_for(job, None)
    record = _running_record(request, engine.clock.now())
    context = contextvars.copy_context()
    # Private: the engine's own way of setting current_job(); set in a copy of the
    # caller's context, so the test's own code never sees it.
    context.run(set_current_job, JobContext(record, RUN_JOB_ENGINE_ID))
    target: Any = definition.target

    def call() -> Any:  # in the job's context, constructor included, as the engine calls it
        body = target(*record.constructor_args).run if definition.is_class else target
        return body(*record.args, **record.kwargs)

    deadline = asyncio.timeout(record.timeout)
    try:
        async with deadline:
            if definition.mode == "inline":
                result = await asyncio.create_task(_awaited(call), context=context)
            else:
                result = await on_daemon_thread(call, name=f"aiojobs-run-job-{record.name}", context=context)
    except Complete as signal:
        result = signal.result
    except TimeoutError:
        if not deadline.expired():
            raise  # the body's own TimeoutError, not its deadline
        raise JobTimeoutError(f"job {record.name!r} timed out after {record.timeout}s") from None
    _json.dumps(result, f"the result of job {record.name!r}")  # private: the engine's own check
    return result


async def _awaited(call: Callable[[], Any]) -> Any:
    return await call()


def _request_for(job: object, args: tuple[object, ...], kwargs: dict[str, object]) -> JobRequest:
    if isinstance(job, JobHandle | ClassJobHandle):
        return job.new(*args, **kwargs)
    if isinstance(job, type) and issubclass(job, Job):
        return job.new(*args, **kwargs)
    raise ConfigurationError(f"run_job() takes a job handle or a Job class, got {job!r}")


def _running_record(request: JobRequest, now: datetime) -> JobRecord:
    """The record of the attempt, as the engine's claim would return it (but id 0)."""
    return JobRecord(
        id=0, queue=request.queue, name=request.name, args=_json.loads(request.args_json),
        kwargs=_json.loads(request.kwargs_json), constructor_args=_json.loads(request.constructor_args_json),
        state=JobState.RUNNING, priority=request.priority, attempt=1, max_attempts=request.max_attempts,
        timeout=request.timeout, inserted_at=now, available_at=now, claimed_at=now, attempted_at=now,
        claimed_by=RUN_JOB_ENGINE_ID, meta=_json.loads(request.meta_json),
    )


# -- inline mode --------------------------------------------------------------------------------


@contextmanager
def inline(engine: Engine, *, timeout: float = 30.0) -> Iterator[Engine]:
    """Within the block, ``enqueue()`` (handles, ``engine.enqueue``, ``enqueue_many``) runs
    the jobs it enqueued before it returns, and returns their records as they are then.

    An engine that is not at work runs them with ``workoff()`` (due jobs only: a delayed job
    stays ``waiting``; see ``advance``). A running engine (``engine.running()``) runs them itself,
    and ``enqueue()`` waits up to ``timeout`` seconds for each due one to finish. A job that
    enqueues another from inside an attempt does not wait: the engine at work runs it next.
    Jobs enqueued by cron ticks are not run inline.
    """
    # Wrapping the engine's one enqueue path, on this instance only, for the block: the
    # engine has no "after enqueue" hook that may await (events are synchronous).
    original = engine.enqueue_requests
    attributes = vars(engine)
    had_own = "enqueue_requests" in attributes
    previous = attributes.get("enqueue_requests")

    async def enqueue_inline(requests: Sequence[JobRequest]) -> list[JobRecord | None]:
        records = await original(requests)
        stored = [record for record in records if record is not None]
        if not stored:
            return records
        if engine.is_running:
            if _inside_a_job():
                return records
            now = engine.clock.now()
            for record in stored:
                if record.available_at <= now:
                    await engine.wait_for(record.id, timeout=timeout)
        else:
            await engine.workoff()
        return [None if record is None else (await engine.get_job(record.id)) or record for record in records]

    attributes["enqueue_requests"] = enqueue_inline
    try:
        yield engine
    finally:
        if had_own:
            attributes["enqueue_requests"] = previous
        else:
            attributes.pop("enqueue_requests", None)


def _inside_a_job() -> bool:
    try:
        current_job()
    except EngineStateError:
        return False
    return True


# -- helpers --------------------------------------------------------------------------------------


def _check_count(count: object) -> None:
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        raise ConfigurationError(f"count must be an int >= 0, got {count!r}")


def _name_of(job: object) -> str:
    if isinstance(job, str):
        return job
    if isinstance(job, JobHandle | ClassJobHandle):
        return job.name
    if isinstance(job, type) and issubclass(job, Job):
        return job.options().name
    raise ConfigurationError(f"job must be a job handle, a Job class or a job name, got {job!r}")


def _engine_for(job: object, engine: object) -> Engine:
    if engine is not None:
        if not isinstance(engine, Engine):
            raise ConfigurationError(f"engine must be an aiojobs_engine.Engine, got {engine!r}")
        return engine
    handle: object = job.options() if isinstance(job, type) and issubclass(job, Job) else job
    owner = getattr(handle, "engine", None)
    if isinstance(owner, Engine):
        return owner
    raise ConfigurationError(
        "pass engine=... (the engine cannot be found from a job name, or when no job is given)"
    )


def _states(state: StateFilter) -> list[JobState] | None:
    if state is None:
        return None
    values = [state] if isinstance(state, str) else list(state)
    try:
        return [JobState(str(value)) for value in values]
    except ValueError:
        raise ConfigurationError(
            f"unknown job state in {state!r}; accepted: {', '.join(s.value for s in JobState)}, or None for any"
        ) from None


async def _list(engine: Engine, *, state: list[JobState] | None, queue: str | None,
                name: str | None) -> list[JobRecord]:
    """Every job matching, oldest first (``list_jobs`` pages newest first)."""
    records: list[JobRecord] = []
    before: int | None = None
    async with engine:
        while True:
            page = await engine.list_jobs(state=state, queue=queue, name=name, limit=_PAGE, before_id=before)
            records.extend(page)
            if len(page) < _PAGE:
                break
            before = page[-1].id
    records.reverse()
    return records


def _matches(record: JobRecord, args: Sequence[object] | None, kwargs: Mapping[str, object] | None,
             meta: Mapping[str, object] | None) -> bool:
    if args is not None and record.args != _plain(list(args)):
        return False
    if kwargs is not None and not _has_items(record.kwargs, kwargs):
        return False
    return meta is None or _has_items(record.meta, meta)


def _has_items(stored: Mapping[str, Any], wanted: Mapping[str, object]) -> bool:
    return all(key in stored and stored[key] == _plain(value) for key, value in wanted.items())


def _plain(value: object) -> object:
    """What a value looks like once stored as JSON (tuples are lists)."""
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    return value


async def _what_is_there(job: JobRef | None, engine: Engine, state: StateFilter) -> str:
    """For a failed assertion that found nothing: the nearest jobs that are there (the same
    job in the states asked for; else any job in them; else how many jobs are in which state)."""
    states = _states(state)
    where = "in any state" if states is None else f"in state {'/'.join(s.value for s in states)}"
    if job is not None:
        same = await all_enqueued(job, engine=engine, state=state)
        if same:
            return _listing(f"{_name_of(job)} jobs {where}", same)
    others = await all_enqueued(engine=engine, state=state)
    if others:
        subject = f"no {_name_of(job)} job is" if job is not None else "jobs"
        return _listing(f"{subject} {where}; the jobs that are", others)
    async with engine:
        counts: dict[str, int] = {}
        for (_, counted_state), number in (await engine.count_jobs()).items():
            counts[counted_state.value] = counts.get(counted_state.value, 0) + number
    if not counts:
        return "\nthe database holds no job at all (was the job enqueued on this engine, on this database?)"
    held = ", ".join(f"{number} {name}" for name, number in sorted(counts.items()))
    return f"\nno job at all is {where}; the database holds: {held}"


def _describe_filter(job: JobRef | None, queue: str | None, args: Sequence[object] | None,
                     kwargs: Mapping[str, object] | None, meta: Mapping[str, object] | None,
                     state: StateFilter, *, plural: bool = False) -> str:
    noun = "jobs" if plural else "job"
    parts = [f"{_name_of(job)} {noun}" if job is not None else noun]
    if args is not None:
        parts.append(f"with args {_plain(list(args))!r}")
    if kwargs is not None:
        parts.append(f"with kwargs including {_plain(kwargs)!r}")
    if meta is not None:
        parts.append(f"with meta including {_plain(meta)!r}")
    if queue is not None:
        parts.append(f"in queue {queue!r}")
    states = _states(state)
    parts.append("in any state" if states is None else f"in state {'/'.join(s.value for s in states)}")
    return " ".join(parts)


def _listing(title: str, records: Sequence[JobRecord], limit: int = 10) -> str:
    if not records:
        return ""
    lines = [f"\n{title} ({len(records)}):"]
    lines += [f"  #{r.id} {r.name} args={r.args!r} kwargs={r.kwargs!r} queue={r.queue!r} state={r.state.value} "
              f"available_at={r.available_at.isoformat()}" for r in records[:limit]]
    if len(records) > limit:
        lines.append(f"  ... and {len(records) - limit} more")
    return "\n".join(lines)
