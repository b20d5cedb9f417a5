"""What users hold: job handles, the ``Job`` base class and unsaved job requests.

``@engine.job`` returns a ``JobHandle`` for a function (still callable as the function) and
the class itself, enriched, for a ``Job`` subclass. Both build ``JobRequest``s: validated,
JSON-encoded and ready to insert, so bad input fails at the call, before any I/O.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, ParamSpec, Protocol, TypeVar, Unpack, overload

from . import _json
from ._context import current_job
from ._control import Transitions
from ._definitions import JobDefinition
from ._errors import ConfigurationError, SerializationError
from ._options import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_PRIORITY,
    DEFAULT_QUEUE,
    JobOptions,
    OptionsDict,
    check_concurrency_key,
    make_options,
)
from ._retry import backoff_to_json
from ._validation import check_name

if TYPE_CHECKING:
    from ._records import JobRecord

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class Enqueuer(Protocol):
    """What handles need from an engine (the Engine implements it)."""

    async def enqueue_requests(self, requests: Sequence[JobRequest]) -> list[JobRecord | None]: ...

    def enqueue_requests_sync(self, requests: Sequence[JobRequest]) -> list[JobRecord | None]: ...


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
    concurrency_key: str | None = None

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

    @property
    def encoded_chars(self) -> int:
        """Characters of the encoded arguments, constructor arguments and meta."""
        return len(self.args_json) + len(self.kwargs_json) + len(self.constructor_args_json) + len(self.meta_json)


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
        concurrency_key=None if options.concurrency_key is None else _concurrency_key(name, options, args, kwargs),
    )


def _concurrency_key(name: str, options: JobOptions, args: tuple[object, ...],
                     kwargs: Mapping[str, object]) -> str | None:
    key = options.concurrency_key
    if not callable(key):
        return key
    try:
        derived = key(*args, **kwargs)
    except Exception as exc:
        raise ConfigurationError(
            f"job {name!r}: its concurrency_key callable {key!r} raised {type(exc).__name__}: {exc} "
            f"(it is called with the job's arguments and returns a string, or None for no key)"
        ) from exc
    return None if derived is None else check_concurrency_key(derived, f"the concurrency_key of job {name!r}")


def check_size(request: JobRequest, limit: int) -> None:
    """Refuse a request whose encoded arguments and meta take more than ``limit`` bytes
    (worth calling once ``4 * request.encoded_chars`` exceeds it: UTF-8 takes at most 4 bytes
    a character)."""
    texts = (request.args_json, request.kwargs_json, request.constructor_args_json, request.meta_json)
    size = sum(len(text.encode("utf-8")) for text in texts)
    if size > limit:
        raise SerializationError(
            f"job {request.name!r}: its arguments and meta take {_bytes(size)} encoded, over the limit of "
            f"{_bytes(limit)} (the max_arguments_bytes setting); store large data elsewhere (a file, an "
            f"object store, a table) and pass its key"
        )


def _bytes(size: int) -> str:
    if size >= 1 << 20:
        return f"{size / (1 << 20):.1f} MiB ({size:,} bytes)"
    return f"{size:,} bytes"


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

    def enqueue_sync(self, *args: P.args, **kwargs: P.kwargs) -> JobRecord | None:
        """``enqueue()`` for code that cannot await (Django, Flask, plain threads): blocks until
        the job is stored. From any thread with no running event loop."""
        request = build_request(self.name, self._definition, self._options, args, kwargs)
        return self._engine.enqueue_requests_sync([request])[0]


class ClassJobHandle(Generic[P, R]):
    """``SomeJob.options(...)``: a class job with options, enqueued with ``run()``'s arguments
    (``P`` and ``R`` are ``run``'s parameters and return type)."""

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

    def options(self, **options: Unpack[OptionsDict]) -> ClassJobHandle[P, R]:
        return ClassJobHandle(self._engine, self._definition, self._options.merged(make_options(options)))

    def new(self, *args: P.args, **kwargs: P.kwargs) -> JobRequest:
        return build_request(self._definition.name, self._definition, self._options, args, kwargs)

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> JobRecord | None:
        return (await self._engine.enqueue_requests([self.new(*args, **kwargs)]))[0]

    def enqueue_sync(self, *args: P.args, **kwargs: P.kwargs) -> JobRecord | None:
        return self._engine.enqueue_requests_sync([self.new(*args, **kwargs)])[0]


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

    def enqueue_sync(self, name: str, *args: object, **kwargs: object) -> JobRecord | None:
        return self._engine.enqueue_requests_sync([self.new(name, *args, **kwargs)])[0]


class _Runnable(Protocol[P, R_co]):
    """A class job, as the type checker sees it: what its ``run`` takes and returns."""

    def run(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...


class _ViaHandle:
    """``Job.enqueue`` and friends: class-level calls typed from the subclass's ``run``.

    A descriptor rather than a classmethod, because only ``__get__`` sees the subclass
    itself (``owner``), from which the type checker reads ``run``'s parameters.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def _bound(self, owner: type[Job]) -> Any:
        if owner.__dict__.get("_aiojobs_handle") is None:
            # Not declared (or a subclass of a declared job): the attribute exists, as any method
            # does (hasattr, inspect and mocks look it up), and calling it says what is wrong.
            def undeclared(*args: object, **kwargs: object) -> Any:
                return owner._handle()  # raises ConfigurationError

            return undeclared
        return getattr(owner._handle(), self._name)


class _OptionsCall(Protocol[P, R]):
    def __call__(self, **options: Unpack[OptionsDict]) -> ClassJobHandle[P, R]: ...


class _Options(_ViaHandle):
    @overload
    def __get__(self, obj: object, owner: type[_Runnable[P, R]]) -> _OptionsCall[P, R]: ...
    @overload
    def __get__(self, obj: object, owner: type[Job]) -> _OptionsCall[..., Any]: ...  # any class job
    def __get__(self, obj: object, owner: Any) -> Any:
        return self._bound(owner)


class _New(_ViaHandle):
    @overload
    def __get__(self, obj: object, owner: type[_Runnable[P, R]]) -> Callable[P, JobRequest]: ...
    @overload
    def __get__(self, obj: object, owner: type[Job]) -> Callable[..., JobRequest]: ...
    def __get__(self, obj: object, owner: Any) -> Any:
        return self._bound(owner)


class _Enqueue(_ViaHandle):
    @overload
    def __get__(self, obj: object, owner: type[_Runnable[P, R]]
                ) -> Callable[P, Coroutine[Any, Any, JobRecord | None]]: ...
    @overload
    def __get__(self, obj: object, owner: type[Job]) -> Callable[..., Coroutine[Any, Any, JobRecord | None]]: ...
    def __get__(self, obj: object, owner: Any) -> Any:
        return self._bound(owner)


class _EnqueueSync(_ViaHandle):
    @overload
    def __get__(self, obj: object, owner: type[_Runnable[P, R]]) -> Callable[P, JobRecord | None]: ...
    @overload
    def __get__(self, obj: object, owner: type[Job]) -> Callable[..., JobRecord | None]: ...
    def __get__(self, obj: object, owner: Any) -> Any:
        return self._bound(owner)


class Job(Transitions):
    """Base class of class jobs: subclass it, implement ``run()``, decorate with ``@engine.job``.

    The constructor's arguments are stored with the job (``options(constructor_args=[...])``)
    and the class is instantiated afresh for each attempt.
    """

    _aiojobs_handle: ClassVar[ClassJobHandle[..., Any] | None] = None

    # Typed from the subclass's ``run``: ``ProcessUser.enqueue("x")`` is a type error when
    # ``run`` takes an int. Each returns what the same method of a ``ClassJobHandle`` does.
    options = _Options()
    new = _New()
    enqueue = _Enqueue()
    enqueue_sync = _EnqueueSync()

    @classmethod
    def _handle(cls) -> ClassJobHandle[..., Any]:
        handle = cls.__dict__.get("_aiojobs_handle")
        if handle is None:
            raise ConfigurationError(
                f"{cls.__qualname__} is not declared as a job; decorate it with @engine.job"
            )
        return handle  # type: ignore[no-any-return]

    @property
    def record(self) -> JobRecord:
        """The running job's record (as it was when the attempt started)."""
        return current_job().record
