"""What users hold: job handles, the ``Job`` base class and unsaved job requests.

``@engine.job`` returns a ``JobHandle`` for a function (still callable as the function) and
the class itself, enriched, for a ``Job`` subclass. Both build ``JobRequest``s: validated,
JSON-encoded and ready to insert, so bad input fails at the call, before any I/O.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Generic, ParamSpec, Protocol, TypeVar, Unpack

from . import _json
from ._context import current_job
from ._control import Transitions
from ._definitions import JobDefinition
from ._errors import ConfigurationError
from ._options import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_PRIORITY,
    DEFAULT_QUEUE,
    JobOptions,
    OptionsDict,
    make_options,
)
from ._retry import backoff_to_json
from ._validation import check_name

if TYPE_CHECKING:
    from ._records import JobRecord

P = ParamSpec("P")
R = TypeVar("R")


class Enqueuer(Protocol):
    """What handles need from an engine (the Engine implements it)."""

    async def enqueue_requests(self, requests: Sequence[JobRequest]) -> list[JobRecord | None]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRequest:
    """One job to insert: built by ``job.new(...)``, inserted by ``engine.enqueue_many``."""

    name: str
    args: tuple[object, ...]
    kwargs: Mapping[str, object]
    options: JobOptions
    definition: JobDefinition | None
    args_json: str
    kwargs_json: str
    constructor_args_json: str
    meta_json: str
    retry_json: str | None

    @property
    def queue(self) -> str:
        return self.options.queue or DEFAULT_QUEUE

    @property
    def priority(self) -> int:
        return DEFAULT_PRIORITY if self.options.priority is None else self.options.priority

    @property
    def max_attempts(self) -> int:
        return self.options.max_attempts or DEFAULT_MAX_ATTEMPTS

    @property
    def timeout(self) -> float | None:
        return self.options.timeout

    @property
    def constructor_args(self) -> tuple[object, ...]:
        return self.options.constructor_args or ()


def build_request(
    name: str,
    definition: JobDefinition | None,
    options: JobOptions,
    args: tuple[object, ...],
    kwargs: Mapping[str, object],
) -> JobRequest:
    """Validate and encode one request; raises before anything is stored."""
    if definition is None:  # a declared job's name was checked when it was declared
        check_name(name, "job name")
    args_json = _json.dumps(list(args), f"the arguments of job {name!r}") if args else "[]"
    kwargs_json = _json.dumps(dict(kwargs), f"the keyword arguments of job {name!r}") if kwargs else "{}"
    if definition is not None:
        definition.check_arguments(args, kwargs, options.constructor_args)
    return JobRequest(
        name=name,
        args=args,
        kwargs=kwargs,
        options=options,
        definition=definition,
        args_json=args_json,
        kwargs_json=kwargs_json,
        constructor_args_json=_json.dumps(list(options.constructor_args), "constructor_args")
        if options.constructor_args else "[]",
        meta_json=_json.dumps(dict(options.meta), "meta") if options.meta else "{}",
        retry_json=None if options.retry is None else _json.dumps(backoff_to_json(options.retry), "retry"),
    )


def with_added_meta(request: JobRequest, answers: Sequence[object]) -> JobRequest:
    """The request with each dict an ``on_before_add`` hook returned added to its meta."""
    additions = [answer for answer in answers if isinstance(answer, Mapping)]
    if not additions:
        return request
    meta = dict(request.options.meta or {})
    for addition in additions:
        meta.update(addition)
    return build_request(request.name, request.definition, request.options.merged(JobOptions(meta=meta)),
                         request.args, request.kwargs)


class JobHandle(Generic[P, R]):
    """A declared function job: call it as the function, or enqueue it.

    ``.options(...)`` returns a new handle; the original is never changed.
    """

    def __init__(self, engine: Enqueuer, definition: JobDefinition, options: JobOptions) -> None:
        self._engine = engine
        self._definition = definition
        self._options = options
        functools.update_wrapper(self, definition.target)

    @property
    def name(self) -> str:
        return self._definition.name

    @property
    def engine(self) -> Enqueuer:
        """The engine this job was declared on (what ``enqueue()`` stores through)."""
        return self._engine

    @property
    def definition(self) -> JobDefinition:
        return self._definition

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = self._definition.target(*args, **kwargs)
        return result

    def __repr__(self) -> str:
        return f"<JobHandle {self.name!r} queue={self._options.queue or DEFAULT_QUEUE!r}>"

    def options(self, **options: Unpack[OptionsDict]) -> JobHandle[P, R]:
        """A handle that enqueues with these options layered over the declared ones."""
        return JobHandle(self._engine, self._definition, self._options.merged(make_options(options)))

    def new(self, *args: P.args, **kwargs: P.kwargs) -> JobRequest:
        """An unsaved job for ``engine.enqueue_many``; validated now."""
        return build_request(self.name, self._definition, self._options, args, kwargs)

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> JobRecord | None:
        """Store the job; returns its record (state ``waiting``), or None if a hook vetoed it."""
        request = build_request(self.name, self._definition, self._options, args, kwargs)
        return (await self._engine.enqueue_requests([request]))[0]


class ClassJobHandle:
    """``SomeJob.options(...)``: a class job with options, enqueued with ``run()``'s arguments."""

    def __init__(self, engine: Enqueuer, definition: JobDefinition, options: JobOptions) -> None:
        self._engine = engine
        self._definition = definition
        self._options = options

    @property
    def name(self) -> str:
        return self._definition.name

    @property
    def engine(self) -> Enqueuer:
        """The engine this job was declared on (what ``enqueue()`` stores through)."""
        return self._engine

    def options(self, **options: Unpack[OptionsDict]) -> ClassJobHandle:
        return ClassJobHandle(self._engine, self._definition, self._options.merged(make_options(options)))

    def new(self, *args: object, **kwargs: object) -> JobRequest:
        return build_request(self._definition.name, self._definition, self._options, args, kwargs)

    async def enqueue(self, *args: object, **kwargs: object) -> JobRecord | None:
        return (await self._engine.enqueue_requests([self.new(*args, **kwargs)]))[0]


class NamedEnqueuer:
    """``engine.options(...)``: enqueue jobs by name, from code that cannot import them."""

    def __init__(self, engine: Enqueuer, lookup: Callable[[str], JobDefinition | None], options: JobOptions) -> None:
        self._engine = engine
        self._lookup = lookup
        self._options = options

    def options(self, **options: Unpack[OptionsDict]) -> NamedEnqueuer:
        return NamedEnqueuer(self._engine, self._lookup, self._options.merged(make_options(options)))

    def new(self, name: str, *args: object, **kwargs: object) -> JobRequest:
        """A request for job ``name``; uses its declared options when this process declares it."""
        definition = self._lookup(check_name(name, "job name"))
        options = self._options if definition is None else definition.options.merged(self._options)
        return build_request(name, definition, options, args, kwargs)

    async def enqueue(self, name: str, *args: object, **kwargs: object) -> JobRecord | None:
        return (await self._engine.enqueue_requests([self.new(name, *args, **kwargs)]))[0]


class Job(Transitions):
    """Base class of class jobs: subclass it, implement ``run()``, decorate with ``@engine.job``.

    The constructor's arguments are stored with the job (``options(constructor_args=[...])``)
    and the class is instantiated afresh for each attempt.
    """

    _aiojobs_handle: ClassVar[ClassJobHandle | None] = None

    @classmethod
    def _handle(cls) -> ClassJobHandle:
        handle = cls.__dict__.get("_aiojobs_handle")
        if handle is None:
            raise ConfigurationError(
                f"{cls.__qualname__} is not declared as a job; decorate it with @engine.job"
            )
        return handle  # type: ignore[no-any-return]

    @classmethod
    def options(cls, **options: Unpack[OptionsDict]) -> ClassJobHandle:
        return cls._handle().options(**options)

    @classmethod
    def new(cls, *args: object, **kwargs: object) -> JobRequest:
        return cls._handle().new(*args, **kwargs)

    @classmethod
    async def enqueue(cls, *args: object, **kwargs: object) -> JobRecord | None:
        return await cls._handle().enqueue(*args, **kwargs)

    @property
    def record(self) -> JobRecord:
        """The running job's record (as it was when the attempt started)."""
        return current_job().record
