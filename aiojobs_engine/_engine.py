"""``Engine``: the facade users hold, and the composition root of everything else.

It declares jobs, opens the database, enqueues, inspects and controls jobs and queues, and
runs a ``Runtime`` for ``run()``/``workoff()``. No I/O, event-loop lookups or signal
handlers happen at import or in the constructor: a module-level engine costs nothing until
it is opened.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import socket
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Final, Never, ParamSpec, Protocol, TypeVar, Unpack, cast, overload

from . import _json
from ._backends import Backend, make_backend
from ._backends._protocol import ActivityBucket, CronSchedule, EngineRegistration, JobFilter, QueueChange
from ._bridge import SyncBridge
from ._clock import Clock, SystemClock
from ._console import DEFAULT_LOG_LEVEL, LogLevel, check_log_level, console_logging
from ._context import _current as _current_job_var
from ._cron import Schedule, check_expression, next_tick, zone
from ._definitions import Registry, make_definition
from ._errors import (
    ConfigurationError,
    DuplicateJobError,
    EngineStateError,
    JobNotFoundError,
    JobStateError,
    QueueNotEmptyError,
    SchemaError,
)
from ._events import EventBus, EventKind, JobEvent
from ._groups import WorkerGroup, check_groups, max_attempts_default
from ._handles import ClassJobHandle, Job, JobHandle, JobRequest, NamedEnqueuer, check_size, with_added_meta
from ._hooks import HOOK_NAMES, Hook, Hooks, check_hook, hooks_from, run_hooks
from ._log import logger
from ._options import (
    UNCHANGED,
    JobOptions,
    OptionsDict,
    QueueConfig,
    RetentionDict,
    Unchanged,
    check_concurrency_per_key,
    check_no_unknown_settings,
    check_queue_settings,
    check_rate_limit,
    check_retention,
    make_options,
)
from ._records import CronRecord, EngineRecord, JobRecord, JobState, QueueRecord
from ._retry import BackoffPolicy, coerce_backoff
from ._runtime._inserts import insert_for
from ._runtime._reimport import refuse_in_worker_bootstrap
from ._runtime._runtime import Runtime
from ._runtime._scheduler import enqueue_due_ticks
from ._runtime._services import Services
from ._settings import EngineSettings, SettingsDict
from ._signals import stop_on_signals
from ._url import DatabaseURL, parse_url, resolve_url
from ._validation import MAX_DELAY, check_bool, check_int, check_name, seconds_from

P = ParamSpec("P")
R = TypeVar("R")
J = TypeVar("J", bound=Job)
T = TypeVar("T")

QueuesArg = Mapping[str, QueueConfig] | Sequence[str] | None

_SET_QUEUE_SETTINGS: Final = ("concurrency", "priority", "global_concurrency", "clear_global_concurrency",
                              "retention", "clear_retention", "rate_limit", "concurrency_per_key",
                              "rate_limit_per_key")


class JobDecorator(Protocol):
    @overload
    def __call__(self, target: type[J], /) -> type[J]: ...  # type: ignore[overload-overlap]
    @overload
    def __call__(self, target: Callable[P, R], /) -> JobHandle[P, R]: ...


class Engine:
    """A job engine bound to one database: declare jobs, enqueue them, run them.

    ``Engine(url, queues=..., **settings)``; the URL is chosen when the engine opens:
    ``configure(url=)``, else the URL given here, else ``$AIOJOBS_DATABASE_URL``, else
    ``sqlite:///aiojobs.sqlite3``.
    """

    def __init__(self, url: str | None = None, *, queues: QueuesArg = None, clock: Clock | None = None,
                 groups: Sequence[WorkerGroup] | None = None, **settings: Unpack[SettingsDict]) -> None:
        if url is not None:
            parse_url(url)  # fail at construction on a malformed URL, but open nothing
        self._given_url = url
        self._configured_url: str | None = None
        self._queues = _normalise_queues(queues)
        self._groups = check_groups(groups or ())
        self._settings = EngineSettings().updated(settings)
        self._clock: Clock = clock or SystemClock()
        self._registry = Registry()
        self._hooks = Hooks()
        self._events = EventBus()
        self._context_hooks: tuple[Callable[[JobRecord], object], ...] = ()
        self._url: DatabaseURL | None = None
        self._backend: Backend | None = None
        self._runtime: Runtime | None = None
        self._run_finished: asyncio.Event | None = None
        self._schedules: dict[str, Schedule] = {}  # declared with @engine.cron, stored when opened
        self._opened = 0  # open() calls not yet matched by close(): nested users share one backend
        self._open_lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the backend was opened on
        self._bridge: SyncBridge | None = None  # sync callers' loop and connections, made by the first one

    # -- configuration --------------------------------------------------------------------

    def configure(self, *, url: str | None = None, queues: QueuesArg = None, clock: Clock | None = None,
                  groups: Sequence[WorkerGroup] | None = None, **settings: Unpack[SettingsDict]) -> None:
        """Change the URL, queues, worker groups or settings of a closed engine (tests point it elsewhere)."""
        if self._backend is not None:
            raise EngineStateError("configure() needs a closed engine; close it first")
        # Check everything first: a bad argument leaves the engine as it was.
        new_settings = self._settings.updated(settings)
        new_groups = self._groups if groups is None else check_groups(groups)
        if url is not None:
            parse_url(url)
        new_queues = self._queues if queues is None else _normalise_queues(queues)
        self.close_sync()  # sync callers' connections were opened with what changes now
        self._groups, self._queues, self._settings = new_groups, new_queues, new_settings
        if url is not None:
            self._configured_url = url
        if clock is not None:
            self._clock = clock

    @property
    def settings(self) -> EngineSettings:
        return self._settings

    @property
    def queues(self) -> dict[str, QueueConfig] | None:
        """The queues this engine works (None: every queue), as given to ``queues=``."""
        return None if self._queues is None else dict(self._queues)

    @property
    def groups(self) -> tuple[WorkerGroup, ...]:
        """The worker groups ``aiojobs work`` runs for this engine (``groups=``, ``add_group``)."""
        return self._groups

    def add_group(self, group: WorkerGroup) -> None:
        """Declare a worker group (see ``WorkerGroup``); its name must be new."""
        self._groups = check_groups((*self._groups, group))

    @property
    def url(self) -> str:
        """The database URL this engine uses (or would use if opened now), password hidden."""
        url = self._url if self.is_open and self._url is not None else parse_url(
            resolve_url(self._configured_url, self._given_url))
        return url.redacted()

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def is_open(self) -> bool:
        return self._backend is not None

    @property
    def is_running(self) -> bool:
        return self._runtime is not None

    @property
    def backend(self) -> Backend:
        """The open backend (for adapters and tools); EngineStateError when closed."""
        return self._require_open()

    @property
    def registry(self) -> Registry:
        return self._registry

    # -- declaring jobs -------------------------------------------------------------------

    @overload
    def job(self, target: type[J], /) -> type[J]: ...  # type: ignore[overload-overlap]
    @overload
    def job(self, target: Callable[P, R], /) -> JobHandle[P, R]: ...
    @overload
    def job(
        self, target: None = None, /, *, name: str | None = ..., cpu_bound: bool = ...,
        requeue_delay: float = ..., retry: BackoffPolicy | Callable[[int], float] | None = ...,
        schedule: str | None = ..., **options: Any,
    ) -> JobDecorator: ...

    def job(self, target: Any = None, /, *, name: str | None = None, cpu_bound: bool = False,
            requeue_delay: float = 5.0, retry: BackoffPolicy | Callable[[int], float] | None = None,
            schedule: str | None = None, **options: Any) -> Any:
        """Declare a job: ``@engine.job`` or ``@engine.job(queue=..., max_attempts=..., ...)``.

        Keyword arguments: ``name``, ``cpu_bound``, ``requeue_delay`` (okay_to_run deferral),
        ``retry`` (a backoff policy or ``(attempt) -> seconds``), ``schedule`` (a cron
        expression: also run it on that schedule, see ``cron``), the enqueue options
        (``queue``, ``priority``, ``max_attempts``, ``timeout``, ``meta``, ``delay``,
        ``unique``, ``retention``, ``concurrency_key``: a string, or a callable given the
        job's arguments that returns one) and hooks (``on_before_add``, ``okay_to_run``,
        ``before_perform``, ``after_perform``, ``on_success``, ``on_failure``,
        ``on_max_attempts_exhausted``).
        """
        hooks = hooks_from({k: options.pop(k) for k in list(options) if k in HOOK_NAMES})
        declared = make_options(options, declaring=True)
        policy = None if retry is None else coerce_backoff(retry, storable=False)
        delay = seconds_from(requeue_delay, "requeue_delay")
        if not isinstance(cpu_bound, bool):
            raise ConfigurationError(f"cpu_bound must be True or False, got {cpu_bound!r}")

        def declare(obj: Any) -> Any:
            is_class = isinstance(obj, type)
            if is_class and not issubclass(obj, Job):
                raise ConfigurationError(f"class jobs must subclass aiojobs_engine.Job; {obj.__qualname__} does not")
            if not is_class and not callable(obj):
                raise ConfigurationError(f"@engine.job decorates a function or a Job subclass, got {obj!r}")
            declared_name = _job_name(obj)
            if declared_name is not None and self._registry.get(declared_name) is not None:
                raise DuplicateJobError(
                    f"{declared_name!r} is already declared as a job on this engine (@engine.cron on a plain "
                    "function declares it): put @engine.cron above @engine.job, or use "
                    "@engine.job(..., schedule=...)"
                )
            definition = make_definition(obj, name=name, cpu_bound=cpu_bound, options=declared, retry=policy,
                                         hooks=hooks, requeue_delay=delay, is_class=is_class)
            self._registry.add(definition)
            if is_class:
                obj._aiojobs_handle = ClassJobHandle(self, definition, declared)
                declared_job: Any = obj
            else:
                declared_job = JobHandle(self, definition, declared)
            if schedule is not None:
                self.cron(schedule)(declared_job)
            return declared_job

        if schedule is not None:
            check_expression(schedule)
        return declare if target is None else declare(target)

    def cron(self, expression: str, *, name: str | None = None, timezone: str = "UTC",
             args: Sequence[object] = (), kwargs: Mapping[str, object] | None = None,
             **options: Unpack[OptionsDict]) -> Callable[[T], T]:
        """Run a job on a cron schedule: ``@engine.cron("*/15 * * * *")`` above ``@engine.job``
        (decorators apply bottom-up, so the job is declared first), or on a plain function
        (declared as a job with default options; ``@engine.job(..., schedule=...)`` gives
        both options and a schedule). Below ``@engine.job`` it would declare the job twice:
        that raises DuplicateJobError.

        Five fields, or six with seconds first; ``timezone`` is an IANA name (default UTC).
        ``name`` defaults to the job's name (give one to schedule a job twice); ``args``,
        ``kwargs`` and the options (queue, priority, max_attempts, timeout, meta) are used
        for every run. The schedule is stored when the engine opens; every engine at work
        enqueues each tick exactly once between them.
        """
        expression = check_expression(expression)
        zone(timezone)
        _check_schedule_options(options)

        def register(target: T) -> T:
            job_name = _job_name(target)
            if job_name is None:
                declared: Any = self.job(cast(Any, target))
                job_name = declared.name
                target = declared
            schedule = Schedule(name=name or job_name, expression=expression, timezone=timezone, job=job_name,
                                args=tuple(args), kwargs=dict(kwargs or {}), options=dict(options))
            _json.dumps([list(schedule.args), schedule.kwargs], f"the arguments of schedule {schedule.name!r}")
            if schedule.name in self._schedules and self._schedules[schedule.name] != schedule:
                raise DuplicateJobError(f"a schedule named {schedule.name!r} is already declared; pass name=...")
            self._schedules[schedule.name] = schedule
            return target

        return register

    async def add_schedule(self, name: str, expression: str, job: str, *, timezone: str = "UTC",
                           args: Sequence[object] = (), kwargs: Mapping[str, object] | None = None,
                           **options: Unpack[OptionsDict]) -> CronRecord:
        """Store a schedule now (or change an existing one); every engine follows it."""
        expression = check_expression(expression)
        _check_schedule_options(options)
        schedule = Schedule(name=name, expression=expression, timezone=timezone, job=job, args=tuple(args),
                            kwargs=dict(kwargs or {}), options=dict(options))
        record = await self._require_open().cron_upsert(_stored(schedule), now=self._clock.for_database())
        return self._with_next_tick(record)

    async def remove_schedule(self, name: str) -> bool:
        """Delete a stored schedule (a declared one comes back when an engine declaring it opens)."""
        return await self._require_open().cron_delete(check_name(name, "schedule name"))

    async def pause_schedule(self, name: str) -> CronRecord | None:
        return await self._set_schedule_paused(name, True)

    async def resume_schedule(self, name: str) -> CronRecord | None:
        """Resume a paused schedule; ticks missed while it was paused are not run."""
        return await self._set_schedule_paused(name, False)

    async def _set_schedule_paused(self, name: str, paused: bool) -> CronRecord | None:
        backend = self._require_open()
        record = await backend.cron_pause(check_name(name, "schedule name"), paused, now=self._clock.for_database())
        if record is not None and not paused:
            # Missed while paused: start again from now, not from the last tick before the pause.
            await backend.cron_advance(record.name, self._clock.now(), None)
            record = next((r for r in await backend.cron_list() if r.name == record.name), record)
        return None if record is None else self._with_next_tick(record)

    async def list_schedules(self) -> list[CronRecord]:
        """Stored schedules, each with its ``next_tick``."""
        return [self._with_next_tick(r) for r in await self._require_open().cron_list()]

    def _with_next_tick(self, record: CronRecord) -> CronRecord:
        after = max(filter(None, [record.last_tick, self._clock.now()]))
        return replace(record, next_tick=None if record.paused else next_tick(record.expression, record.timezone,
                                                                                after))

    async def enqueue_due_schedules(self) -> list[JobRecord]:
        """Enqueue the ticks that have come now (what engines at work do every second);
        for tests that move a ``FrozenClock`` instead of waiting."""
        self._require_open()
        return await enqueue_due_ticks(self._services(), self._clock.now())

    def subscribe(self, listener: Callable[[JobEvent], object], *,
                  kinds: Iterable[str] | None = None) -> Callable[[], None]:
        """Call ``listener(event)`` for every ``JobEvent``, or only for the ``kinds`` given
        (``EventKind`` values); returns a function that unsubscribes. Listeners run on the
        event loop: keep them quick. Events no listener wants are never built."""
        return self._events.subscribe(listener, kinds)

    def add_context_hook(self, hook: Callable[[JobRecord], object]) -> None:
        """Run ``hook(record)`` inside each attempt's own context, just before its body starts
        (async and thread jobs): set context variables there, such as a tracing span."""
        if not callable(hook):
            raise ConfigurationError(f"a context hook must be callable, got {hook!r}")
        self._context_hooks = (*self._context_hooks, hook)

    def add_hook(self, point: str, hook: Hook) -> None:
        """Add an engine-wide hook (runs before each job's own hooks of that point)."""
        check_hook(point, hook)
        self._hooks = self._hooks.added(point, hook)

    def hook(self, point: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator form of ``add_hook``: ``@engine.hook("on_failure")``."""
        check_hook(point, _nothing)

        def register(function: Callable[..., Any]) -> Callable[..., Any]:
            self.add_hook(point, function)
            return function

        return register

    # -- opening and closing --------------------------------------------------------------

    async def open(self) -> None:
        """Connect and bring the schema up to date (or check it, with ``auto_migrate=False``).

        Opens nest: each ``open()`` (or ``async with engine``) needs its ``close()``, and the
        engine closes with the last one, so code inside a job can safely ``async with engine``.
        """
        refuse_in_worker_bootstrap()
        self._check_loop()
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if self._backend is None:
                self._url, self._backend = await self._connect()
                self._loop = asyncio.get_running_loop()
            self._opened += 1

    async def _connect(self) -> tuple[DatabaseURL, Backend]:
        """A backend for this engine's URL, opened, its schema checked and its queue settings stored."""
        url = parse_url(resolve_url(self._configured_url, self._given_url))
        backend = make_backend(url)
        await backend.open()
        try:
            await self._check_schema(backend)
            await self._write_queue_configuration(backend)
        except BaseException:
            await backend.close()
            raise
        return url, backend

    def _check_loop(self) -> None:
        """Refuse use from an event loop other than the one the engine was opened on: its
        connections belong to that loop, and would fail or hang on another."""
        if self._loop is None or self._backend is None or asyncio.get_running_loop() is self._loop:
            return
        if self._loop.is_closed():
            raise EngineStateError(
                "this engine was left open when the event loop it was opened on ended (an asyncio.run() or a "
                "test's loop that finished without closing it): `await engine.close()`, then open it again; "
                "under pytest-asyncio, give a fixture that opens an engine the loop_scope of the tests using it"
            )
        raise EngineStateError(
            "this engine is open on another event loop (another thread's): use it from that loop, or close it "
            "there first; from a thread that cannot await, call enqueue_sync(); under pytest-asyncio, give a "
            "fixture that opens an engine the loop_scope of the tests using it"
        )

    async def _write_queue_configuration(self, backend: Backend) -> None:
        """The settings given in ``queues=`` (only those given) are stored when the engine opens."""
        for name, config in (self._queues or {}).items():
            await backend.queue_upsert(
                QueueChange(name=name, concurrency=config.concurrency, priority=config.priority,
                            global_concurrency=config.global_concurrency, rate_limit=config.rate_limit,
                            concurrency_per_key=config.concurrency_per_key,
                            rate_limit_per_key=config.rate_limit_per_key,
                            retention=None if config.retention is None else check_retention(config.retention)),
                now=self._clock.for_database(),
            )
        for schedule in self._schedules.values():
            await backend.cron_upsert(_stored(schedule), now=self._clock.for_database())

    async def _check_schema(self, backend: Backend) -> None:
        if self._settings.auto_migrate:
            await backend.migrate()
            return
        version = await backend.schema_version()
        if version == 0:
            raise SchemaError(
                "this database holds no aiojobs_engine tables yet (auto_migrate is off): create them with "
                "`aiojobs migrate`, or by opening an engine with auto_migrate=True"
            )
        if version < backend.latest_version:
            raise SchemaError(
                f"the database schema is at version {version}, this engine needs {backend.latest_version}; "
                "run `aiojobs migrate` (auto_migrate is off)"
            )
        if version > backend.latest_version:
            raise SchemaError(
                f"the database schema is at version {version}, newer than this aiojobs_engine knows "
                f"({backend.latest_version}); upgrade aiojobs_engine on this host"
            )

    async def close(self) -> None:
        """Undo one ``open()``; the last one closes the database (a running engine keeps it open)."""
        if self._opened == 0:
            return
        self._opened -= 1
        if self._opened > 0:
            return
        if self._loop is not None and self._loop.is_closed():
            # Its connections belong to a loop that has ended: they cannot be closed from here.
            logger.warning("engine closed after its event loop ended: its connections were left to the "
                           "garbage collector")
            self._backend = self._loop = self._runtime = None
            return
        if self._runtime is not None:
            await self.stop()
        backend, self._backend, self._loop = self._backend, None, None
        if backend is not None:
            await backend.close()

    async def __aenter__(self) -> Engine:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def migrate(self) -> list[int]:
        """Apply pending migrations now (open or closed engine); the versions applied.

        This is how to upgrade the schema when ``auto_migrate`` is off (``aiojobs migrate``).
        """
        if self._backend is not None:
            return await self._backend.migrate()
        backend = make_backend(parse_url(resolve_url(self._configured_url, self._given_url)))
        await backend.open()
        try:
            return await backend.migrate()
        finally:
            await backend.close()

    def _require_open(self) -> Backend:
        if self._backend is None:
            raise EngineStateError("the engine is closed: use `async with engine:` or `await engine.open()` first")
        return self._backend

    # -- enqueueing -----------------------------------------------------------------------

    def options(self, **options: Unpack[OptionsDict]) -> NamedEnqueuer:
        """Options for enqueueing by name: ``engine.options(queue="x").enqueue("job", ...)``."""
        return NamedEnqueuer(self, self._registry.get, make_options(options))

    def new(self, name: str, *args: object, **kwargs: object) -> JobRequest:
        """An unsaved request for job ``name`` (declared here or not), for ``enqueue_many``."""
        return NamedEnqueuer(self, self._registry.get, JobOptions()).new(name, *args, **kwargs)

    async def enqueue(self, name: str, *args: object, **kwargs: object) -> JobRecord | None:
        """Enqueue job ``name``; its declared options apply when this process declares it."""
        return (await self.enqueue_requests([self.new(name, *args, **kwargs)]))[0]

    async def enqueue_many(self, requests: Sequence[JobRequest]) -> list[JobRecord | None]:
        """Insert many jobs in one transaction; records in the same order (None where vetoed)."""
        return await self.enqueue_requests(_checked_requests(requests, "enqueue_many"))

    def enqueue_sync(self, name: str, *args: object, **kwargs: object) -> JobRecord | None:
        """``enqueue()`` for code that cannot await: blocks until the job is stored.

        From any thread with no running event loop (a Django or Flask view, a script, a
        thread pool). When this engine is open and running on a loop in another thread, the
        job goes through that loop; otherwise through a loop and connections kept for sync
        callers (``close_sync()`` closes them; so does the interpreter's exit).
        """
        return self.enqueue_requests_sync([self.new(name, *args, **kwargs)])[0]

    def enqueue_many_sync(self, requests: Sequence[JobRequest]) -> list[JobRecord | None]:
        """``enqueue_many()`` for code that cannot await (see ``enqueue_sync``)."""
        return self.enqueue_requests_sync(_checked_requests(requests, "enqueue_many_sync"))

    def enqueue_requests_sync(self, requests: Sequence[JobRequest]) -> list[JobRecord | None]:
        refuse_in_worker_bootstrap()
        if _running_loop() is not None:
            raise EngineStateError(
                "enqueue_sync() blocks, and this thread runs an event loop it would block: "
                "use `await ....enqueue(...)` here"
            )
        if any(request.options.connection is not None for request in requests):
            raise ConfigurationError(
                "connection= (enqueue in the caller's transaction) needs `await enqueue()` on that "
                "connection's event loop; a sync enqueue stores the job in a transaction of its own"
            )
        self._check_sizes(requests)  # before any I/O: a database that is down must not hide it
        if self._bridge is None:
            url = parse_url(resolve_url(self._configured_url, self._given_url))
            if url.is_memory:
                raise ConfigurationError(
                    "enqueue_sync() opens connections of its own, and an in-memory SQLite database exists "
                    "only inside one connection: use a database file (or PostgreSQL), or `await enqueue()`"
                )
            bridge = self._bridge = SyncBridge(functools.partial(_connect_for_bridge, weakref.ref(self)))
            weakref.finalize(self, bridge.close)  # at exit, or when this engine is collected
        return self._bridge.call(lambda backend: self._insert(backend, requests, runtime=None))

    def close_sync(self) -> None:
        """Close the connections sync enqueues opened: calls in flight get a few seconds to
        finish (the rest raise ``EngineStateError``). The next sync call opens them again;
        ``configure()`` and the interpreter's exit close them too."""
        if self._bridge is not None:
            self._bridge.close()

    def _check_sizes(self, requests: Sequence[JobRequest | None]) -> None:
        limit = self._settings.max_arguments_bytes
        if limit is not None:
            for request in requests:
                if request is not None and 4 * request.encoded_chars > limit:  # UTF-8: at most 4 bytes a char
                    check_size(request, limit)

    async def enqueue_requests(self, requests: Sequence[JobRequest]) -> list[JobRecord | None]:
        backend = self._require_open()
        self._check_loop()
        self._check_sizes(requests)
        return await self._insert(backend, requests, runtime=self._runtime)

    async def _insert(self, backend: Backend, requests: Sequence[JobRequest],
                      runtime: Runtime | None) -> list[JobRecord | None]:
        connections = {id(r.options.connection): r.options.connection for r in requests}
        if len(connections) > 1:
            raise ConfigurationError("all requests of one enqueue_many must use the same connection=")
        if self._hooks.on_before_add or any(r.definition and r.definition.hooks.on_before_add for r in requests):
            admitted = [await self._admit(request) for request in requests]
            self._check_sizes([a for a, r in zip(admitted, requests, strict=True) if a is not r])  # meta added
        else:
            admitted = list(requests)  # no hook to ask: not a coroutine per job of a bulk enqueue
        kept = [i for i, request in enumerate(admitted) if request is not None]
        results: list[JobRecord | None] = [None] * len(requests)
        if not kept:
            return results
        now = self._clock.now()
        inserts = [insert_for(self._group_defaults(request), now) for request in admitted if request is not None]
        records = await backend.job_insert_many(
            inserts, now=self._clock.for_database(), connection=next(iter(connections.values())),
            retention=self._settings.retention,
        )
        for index, record in zip(kept, records, strict=True):
            results[index] = record
        if self._events.wants(EventKind.JOB_ENQUEUED):
            at = self._clock.now()
            for record in records:
                if not record.existing:  # a unique enqueue that found its job already there
                    self._events.emit(JobEvent(kind=EventKind.JOB_ENQUEUED, at=at, job=record))
        if runtime is not None:
            runtime.jobs_enqueued(sorted({r.queue for r in records}))
        return results

    def _group_defaults(self, request: JobRequest) -> JobRequest:
        """A job whose declaration and enqueue set no max_attempts gets its queue's group default."""
        if request.options.max_attempts is not None or not self._groups:
            return request
        default = max_attempts_default(self._groups, request.queue)
        return request if default is None else replace(request, options=replace(request.options,
                                                                                max_attempts=default))

    async def _admit(self, request: JobRequest) -> JobRequest | None:
        """Ask the on_before_add hooks: None if one vetoed; meta they returned is added."""
        hooks = self._hooks.on_before_add + (request.definition.hooks.on_before_add if request.definition else ())
        if not hooks:
            return request
        answers = await run_hooks("on_before_add", hooks, request, extra={"event": "", "job_name": request.name})
        if any(answer is False for answer in answers):
            return None
        return with_added_meta(request, answers)

    # -- inspecting and controlling jobs ----------------------------------------------------

    async def get_job(self, job_id: int) -> JobRecord | None:
        return await self._require_open().job_get(_check_id(job_id))

    async def list_jobs(self, *, state: JobState | str | Sequence[JobState | str] | None = None,
                        queue: str | Sequence[str] | None = None, name: str | Sequence[str] | None = None,
                        limit: int = 100, before_id: int | None = None,
                        search: str | None = None) -> list[JobRecord]:
        """Jobs newest first; pass the last id seen as ``before_id`` for the next page.

        ``search``: only jobs with a string or number anywhere in their arguments or meta
        that contains this text, ignoring case (``"acme"`` finds ``meta={"tenant": "ACME"}``
        and ``args=["acme-42"]``). It scans the jobs (no index), newest first, until
        ``limit`` match.
        """
        states = [_check_state(s) for s in _as_list(state)]
        return await self._require_open().job_list(JobFilter(
            states=states,
            queues=[check_name(q, "queue") for q in _as_list(queue)],
            names=[check_name(n, "job name") for n in _as_list(name)],
            limit=check_int(limit, "limit", minimum=1, maximum=10_000),
            before_id=None if before_id is None else _check_id(before_id),
            search=_check_search(search),
        ))

    async def count_jobs(self, *, due_only: bool = False) -> dict[tuple[str, JobState], int]:
        """Job counts per (queue, state); ``due_only``: pending jobs whose time has come."""
        counts = await self._require_open().job_count(now=self._clock.for_database(), due_only=due_only)
        return dict(counts)

    async def wait_for(self, job_id: int, timeout: float | None = None) -> JobRecord:
        """Wait until the job is completed, failed or canceled; TimeoutError after ``timeout``."""
        backend = self._require_open()
        job_id = _check_id(job_id)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + seconds_from(timeout, "timeout")
        delay, cap = 0.005, min(self._settings.poll_interval, 0.25)
        while True:
            record = await backend.job_get(job_id)
            if record is None:
                raise JobNotFoundError(f"no job with id {job_id}")
            if record.is_terminal:
                return record
            if deadline is not None and loop.time() >= deadline:
                raise TimeoutError(f"job {job_id} is still {record.state} after {timeout}s")
            pause = delay if deadline is None else min(delay, max(0.0, deadline - loop.time()))
            await asyncio.sleep(pause)
            delay = min(delay * 2, cap)

    async def cancel(self, job_id: int) -> JobRecord | None:
        """Cancel a job: a pending one at once, a running one by the engine running it.

        Returns the record after the call (still ``running`` with ``cancel_requested`` when
        another engine runs it), or None for an unknown id.
        """
        record = await self._require_open().job_cancel(
            _check_id(job_id), retention=self._settings.retention, now=self._clock.for_database()
        )
        if record is not None and self._runtime is not None and (record.cancel_requested or record.is_terminal):
            self._runtime.cancel_local(record.id)  # a run of it here stops now, not at the next poll
        return record

    async def retry_job(self, job_id: int) -> JobRecord | None:
        """Run a failed, canceled or completed job again now (its attempts are topped up).

        Returns the record after the call (unchanged for a job that is not finished), or None
        for an unknown id. A unique job whose key another job holds now is left as it is:
        ``UniqueConflictError`` names the holder (its ``holder_id``).
        """
        record = await self._require_open().job_retry(_check_id(job_id), now=self._clock.for_database())
        if record is not None and record.state is JobState.WAITING and self._runtime is not None:
            self._runtime.jobs_enqueued([record.queue])
        return record

    async def snooze(self, job_id: int, delay: float | timedelta) -> JobRecord | None:
        """Put a waiting or snoozed job aside: ``snoozed`` until ``delay`` seconds from now.

        Returns the record after the call, or None for an unknown id. Its attempt count,
        errors and unique key are left alone. A job in any other state raises
        ``JobStateError`` and is not changed: a claimed or running one belongs to the engine
        running it (the job itself can ``raise Snooze(delay)``), a finished one has nothing
        left to put off.
        """
        seconds = seconds_from(delay, "snooze delay", maximum=MAX_DELAY)
        job_id = _check_id(job_id)
        record = await self._require_open().job_snooze(job_id, delay=seconds, now=self._clock.for_database())
        if record is None or record.state is JobState.SNOOZED:
            return record
        if record.state in (JobState.CLAIMED, JobState.RUNNING):
            raise JobStateError(
                f"job {job_id} is {record.state} (by {record.claimed_by}) and cannot be snoozed from outside: "
                "cancel it, or let the job raise Snooze(delay) itself"
            )
        raise JobStateError(
            f"job {job_id} is {record.state}; only waiting or snoozed jobs can be snoozed (retry_job runs a "
            "finished job again)"
        )

    async def delete_job(self, job_id: int) -> bool:
        """Delete a job that is not running; False if there is none, or it runs."""
        backend = self._require_open()
        record = await backend.job_get(_check_id(job_id))
        if record is None or record.state in (JobState.CLAIMED, JobState.RUNNING):
            return False
        return await backend.job_delete(job_id)

    async def clear(self, *, states: Sequence[JobState | str] = (), queues: Sequence[str] = ()) -> int:
        """Delete jobs (all when no filter is given) that are not held by an engine."""
        held = (JobState.CLAIMED, JobState.RUNNING)
        wanted = [_check_state(s) for s in states] or [s for s in JobState if s not in held]
        if any(s in held for s in wanted):
            raise ConfigurationError("clear() cannot delete claimed or running jobs; cancel them first")
        return await self._require_open().job_delete_where(wanted, [check_name(q, "queue") for q in queues])

    async def prune(self) -> int:
        """Delete finished jobs past their retention now; how many were deleted."""
        backend = self._require_open()
        batch = self._settings.prune_batch_size
        total = 0
        while True:
            deleted = await backend.job_prune(limit=batch, now=self._clock.for_database())
            total += deleted
            if deleted < batch:
                return total

    async def job_activity(self, *, since: datetime, bucket: float = 60.0) -> list[ActivityBucket]:
        """Completed and failed jobs per queue and ``bucket`` seconds since ``since`` (for charts)."""
        if since.tzinfo is None:
            raise ConfigurationError("since must be a timezone-aware datetime")
        return await self._require_open().job_activity(
            since=since, bucket=seconds_from(bucket, "bucket", allow_zero=False), now=self._clock.for_database()
        )

    async def list_engines(self) -> list[EngineRecord]:
        return await self._require_open().engine_list()

    # -- queues ---------------------------------------------------------------------------

    async def list_queues(self) -> list[QueueRecord]:
        return await self._require_open().queue_list()

    async def pause_queue(self, name: str) -> QueueRecord:
        return await self._change_queue(QueueChange(name=check_name(name, "queue"), paused=True))

    async def resume_queue(self, name: str) -> QueueRecord:
        return await self._change_queue(QueueChange(name=check_name(name, "queue"), paused=False))

    async def set_queue(self, name: str, *, concurrency: int | None = None, priority: int | None = None,
                        global_concurrency: int | None = None, clear_global_concurrency: bool = False,
                        retention: RetentionDict | None = None, clear_retention: bool = False,
                        rate_limit: tuple[int, float | timedelta] | Unchanged | None = UNCHANGED,
                        concurrency_per_key: int | Unchanged | None = UNCHANGED,
                        rate_limit_per_key: tuple[int, float | timedelta] | Unchanged | None = UNCHANGED,
                        **unknown: Never) -> QueueRecord:
        """Store a queue's settings; every engine working it follows within a poll interval.

        ``retention``: seconds to keep the queue's completed/failed/canceled jobs (None: for
        ever); ``clear_retention=True`` makes them follow the engine's settings again.
        ``rate_limit=(20, 1.0)``: at most 20 job starts in any window of 1.0 s, counted across
        every engine; ``None`` removes the limit (left out: unchanged).
        ``concurrency_per_key=1``: at most one job of each ``concurrency_key`` claimed or
        running at once across every engine (jobs with no key are not limited by it);
        ``rate_limit_per_key=(5, 1.0)``: at most 5 starts of each key in any 1.0 s window.
        Both take ``None`` to remove them. Any other keyword raises ConfigurationError.
        """
        check_no_unknown_settings(unknown, "queue setting", _SET_QUEUE_SETTINGS)
        check_queue_settings(concurrency=concurrency, priority=priority, global_concurrency=global_concurrency)
        rate = None if rate_limit is UNCHANGED or rate_limit is None else check_rate_limit(rate_limit)
        per_key = (None if concurrency_per_key is UNCHANGED or concurrency_per_key is None
                   else check_concurrency_per_key(concurrency_per_key))
        rate_per_key = (None if rate_limit_per_key is UNCHANGED or rate_limit_per_key is None
                        else check_rate_limit(rate_limit_per_key, "rate_limit_per_key"))
        return await self._change_queue(QueueChange(
            name=check_name(name, "queue"), concurrency=concurrency, priority=priority,
            global_concurrency=global_concurrency, clear_global_concurrency=clear_global_concurrency,
            retention=None if retention is None else check_retention(retention, "queue retention"),
            clear_retention=check_bool(clear_retention, "clear_retention"),
            rate_limit=rate, clear_rate_limit=rate_limit is None,
            concurrency_per_key=per_key, clear_concurrency_per_key=concurrency_per_key is None,
            rate_limit_per_key=rate_per_key, clear_rate_limit_per_key=rate_limit_per_key is None,
        ))

    async def delete_queue(self, name: str) -> bool:
        """Delete the stored settings of a queue that holds no job; False if none are stored.

        Raises ``QueueNotEmptyError`` (with the counts per state) while any job of the queue
        is stored, whatever its state. A queue in this engine's ``queues=`` is stored again
        when the engine next opens; enqueueing into the queue stores it again with defaults.
        """
        backend = self._require_open()
        queue = check_name(name, "queue")
        if await backend.queue_delete(queue):
            return True
        stored = await backend.job_count()
        counts = {str(state): stored[queue, state] for state in JobState if stored.get((queue, state))}
        if counts:
            listed = ", ".join(f"{n} {state}" for state, n in counts.items())
            raise QueueNotEmptyError(
                f"queue {queue!r} still holds {sum(counts.values())} job(s) ({listed}); cancel, clear or "
                "let them finish and be pruned first",
                queue=queue, counts=counts,
            )
        return False

    async def _change_queue(self, change: QueueChange) -> QueueRecord:
        record = await self._require_open().queue_upsert(change, now=self._clock.for_database())
        if self._runtime is not None:
            self._runtime.queue_changed(record)
        return record

    # -- working --------------------------------------------------------------------------

    async def run(self, *, handle_signals: bool = False, log_level: LogLevel = DEFAULT_LOG_LEVEL) -> None:
        """Work jobs until ``stop()`` (or cancellation). Opens a closed engine and closes it after.

        With ``handle_signals=True`` (what the CLI does), SIGINT/SIGTERM stop gracefully and
        a second signal stops at once; the previous handlers are restored afterwards.

        ``log_level`` (``"info"``, ``"warning"``, … or ``None``): if the application has
        configured no logging handler, the engine's records at this level and above go to
        stderr while it runs (docs/logging.md); ``None`` never does.
        """
        with console_logging(log_level):
            await self._work(drain=False, signals=handle_signals)

    async def workoff(self, *, handle_signals: bool = False, log_level: LogLevel = DEFAULT_LOG_LEVEL) -> int:
        """Run every due job of every queue that is not paused, until none is left.

        Includes jobs that come due or are enqueued meanwhile, and jobs of engines that died
        (rescued first); does not wait for future retries or delays, nor for room under a
        queue's global cap held by other engines. Returns the number of attempts run.

        ``stop()`` ends it early, as it ends ``run()``. With ``handle_signals=True`` (what
        ``aiojobs workoff`` does), SIGINT/SIGTERM do so too: the first stops claiming and lets
        running jobs finish within ``shutdown_grace``, a second hands them back at once; the
        previous handlers are restored afterwards.

        ``log_level``: as for ``run()``.
        """
        with console_logging(log_level):
            return await self._work(drain=True, signals=handle_signals)

    async def _work(self, *, drain: bool, signals: bool) -> int:
        if self._runtime is not None:
            raise EngineStateError("this engine is already running; call stop() first")
        await self.open()
        url = self._url
        assert url is not None
        services = self._services()
        runtime = Runtime(services, queues=self._queues, open_backend=lambda: make_backend(url), drain=drain)
        self._runtime = runtime
        self._run_finished = asyncio.Event()
        try:
            if signals:
                with stop_on_signals(runtime.request_stop):
                    return await runtime.run()
            return await runtime.run()
        finally:
            self._runtime = None
            self._run_finished.set()
            await self.close()

    def _services(self) -> Services:
        return Services(backend=self._require_open(), clock=self._clock, settings=self._settings,
                        registry=self._registry, hooks=self._hooks, registration=self._registration(),
                        events=self._events, context_hooks=self._context_hooks)

    def _registration(self) -> EngineRegistration:
        return EngineRegistration(
            id=self._settings.worker_id or default_worker_id(),
            incarnation=os.urandom(8).hex(),
            host=_hostname(),
            pid=os.getpid(),
            queues=None if self._queues is None else list(self._queues),
        )

    async def stop(self, *, immediate: bool = False) -> None:
        """Stop ``run()``: stop claiming, let running jobs finish within ``shutdown_grace``
        (at once with ``immediate=True``), hand the rest back to waiting, and return when done."""
        runtime, finished = self._runtime, self._run_finished
        if runtime is None or finished is None:
            return
        runtime.request_stop(immediate=immediate)
        if _current_job_var.get() is not None:
            return  # called from inside a job of this engine: waiting would wait for ourselves
        await finished.wait()

    @asynccontextmanager
    async def running(self, *, log_level: LogLevel = DEFAULT_LOG_LEVEL) -> AsyncIterator[Engine]:
        """Run the engine in the background of a service: ``async with engine.running(): ...``
        (``log_level``: as for ``run()``)."""
        check_log_level(log_level)  # a bad value fails here, not in the background task
        task = asyncio.create_task(self.run(log_level=log_level), name="aiojobs-engine-run")
        try:
            while self._runtime is None or not self._runtime.started.is_set():
                if task.done():
                    await task  # start-up failed: raise its error here
                    raise EngineStateError("the engine stopped during start-up")
                await asyncio.sleep(0.005)
        except BaseException:
            task.cancel()  # cancelled (or failed) while starting: stop the half-started run
            await asyncio.gather(task, return_exceptions=True)
            raise
        try:
            yield self
        finally:
            await self.stop()
            await task


def _checked_requests(requests: object, method: str) -> Sequence[JobRequest]:
    if isinstance(requests, JobRequest) or not isinstance(requests, Sequence):
        raise ConfigurationError(f"{method} takes a list of requests built with job.new(...)")
    for request in requests:
        if not isinstance(request, JobRequest):
            raise ConfigurationError(f"{method} takes requests built with job.new(...), got {request!r}")
    return requests


async def _connect_for_bridge(engine: weakref.ref[Engine]) -> Backend:
    """A backend for the sync bridge of ``engine`` (weakly held: the bridge must not keep
    its engine alive, since the engine's collection is what closes the bridge)."""
    refuse_in_worker_bootstrap()
    alive = engine()
    if alive is None:
        raise EngineStateError("the engine of this sync enqueue no longer exists")
    return (await alive._connect())[1]


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _job_name(target: object) -> str | None:
    """The stored name of a declared job (a handle or a decorated Job class), else None."""
    if isinstance(target, JobHandle):
        return target.name
    handle = getattr(target, "__dict__", {}).get("_aiojobs_handle")
    return handle.name if isinstance(handle, ClassJobHandle) else None


def _check_schedule_options(options: Mapping[str, object]) -> None:
    """A schedule's options are stored: only what can be (and what means something for every tick)."""
    checked = make_options(options)
    if checked.delay is not None or checked.run_at is not None or checked.connection:
        raise ConfigurationError("a schedule's options cannot include delay, run_at or connection")
    if callable(checked.concurrency_key):
        raise ConfigurationError("a schedule's concurrency_key must be a string: a callable one goes on the job's "
                                 "declaration, @engine.job(concurrency_key=...), and applies to its ticks too")


def _stored(schedule: Schedule) -> CronSchedule:
    return CronSchedule(
        name=schedule.name, expression=schedule.expression, timezone=schedule.timezone, job=schedule.job,
        args_json=_json.dumps(list(schedule.args), "schedule args"),
        kwargs_json=_json.dumps(schedule.kwargs, "schedule kwargs"),
        options_json=_json.dumps(schedule.options, "schedule options"),
    )


def _normalise_queues(queues: QueuesArg) -> dict[str, QueueConfig] | None:
    if queues is None:
        return None
    if isinstance(queues, str):
        raise ConfigurationError(f"queues must be a list of names or a dict of QueueConfig, got {queues!r}")
    if isinstance(queues, Mapping):
        result = {}
        for name, config in queues.items():
            if not isinstance(config, QueueConfig):
                raise ConfigurationError(f"queues[{name!r}] must be a QueueConfig, got {config!r}")
            result[check_name(name, "queue")] = config
    else:
        result = {check_name(name, "queue"): QueueConfig() for name in queues}
    if not result:
        raise ConfigurationError("queues must name at least one queue (or be None for every queue)")
    return result


def _check_state(state: object) -> JobState:
    try:
        return JobState(str(state))
    except ValueError:
        raise ConfigurationError(
            f"unknown job state {state!r}; accepted: {', '.join(s.value for s in JobState)}"
        ) from None


MAX_SEARCH: Final = 200  # characters of a list_jobs search: a text to find, not a document


def _check_search(search: object) -> str | None:
    """The text to search for; None (no search) for None or ''. Refused: not a string, too
    long, or holding NUL (PostgreSQL's text cannot hold it)."""
    if search is None or search == "":
        return None
    if not isinstance(search, str):
        raise ConfigurationError(f"search must be a string, got {search!r}")
    if len(search) > MAX_SEARCH:
        raise ConfigurationError(f"search must be at most {MAX_SEARCH} characters, got {len(search)}")
    if "\x00" in search:
        raise ConfigurationError("search must not contain the NUL character (\\x00)")
    return search


def _check_id(job_id: object) -> int:
    return check_int(job_id, "job id", minimum=1)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str | JobState):
        return [value]
    return list(value)


_HOST_CHARS = re.compile(r"[^A-Za-z0-9_.\-]")


def _hostname() -> str:
    return _HOST_CHARS.sub("-", socket.gethostname())[:60] or "host"


def default_worker_id() -> str:
    """host + pid + a random suffix: unique per engine start."""
    return f"{_hostname()}-{os.getpid()}-{os.urandom(3).hex()}"


def _nothing(*_: object) -> None:
    return None

