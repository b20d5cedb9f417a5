"""Job definitions: what ``@engine.job`` declares, and the registry that finds them by name.

A definition knows how to run its target (an async function, a blocking function for a
thread, a CPU-bound function for the process pool, or a ``Job`` class), the options it was
declared with, and how to check arguments against its signature before anything is stored.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._errors import ArgumentsError, ConfigurationError, DuplicateJobError, UnknownJobError
from ._hooks import Hooks
from ._options import JobOptions
from ._retry import BackoffPolicy
from ._validation import check_name


class RunMode(enum.StrEnum):
    """Where an attempt's body runs."""

    INLINE = "inline"  # an async body, as a task on the engine's loop
    THREAD = "thread"  # a blocking body, in the engine's thread pool
    PROCESS = "process"  # a CPU-bound body, in a supervised worker process


@dataclass(frozen=True, slots=True, kw_only=True)
class JobDefinition:
    name: str
    target: Callable[..., Any]  # the function, or the Job subclass
    is_class: bool
    mode: RunMode
    options: JobOptions
    retry: BackoffPolicy | None
    hooks: Hooks
    requeue_delay: float
    run_signature: inspect.Signature
    init_signature: inspect.Signature | None
    # (fewest, most) positional arguments that bind to run_signature with no keywords, or
    # None if such a call can fail for another reason: most calls are checked by a count.
    positional_arity: tuple[int, float] | None = None

    @property
    def import_path(self) -> tuple[str, str]:
        """Where a worker process imports the target from: (module, qualified name)."""
        return self.target.__module__, self.target.__qualname__

    def check_arguments(self, args: Sequence[object], kwargs: Mapping[str, object],
                        constructor_args: Sequence[object] | None) -> None:
        """Raise ArgumentsError unless the arguments bind to the job's signature(s)."""
        arity = self.positional_arity
        if kwargs or arity is None or not arity[0] <= len(args) <= arity[1]:
            _bind(self.run_signature, args, kwargs, f"job {self.name!r}")  # the exact check, and its message
        if self.init_signature is not None:
            _bind(self.init_signature, constructor_args or (), {}, f"the constructor of job {self.name!r}")
        elif constructor_args:
            raise ConfigurationError(f"constructor_args is for class jobs; job {self.name!r} is a function")


def _bind(signature: inspect.Signature, args: Sequence[object], kwargs: Mapping[str, object], what: str) -> None:
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise ArgumentsError(f"arguments do not fit {what}{signature}: {exc}") from None


def _positional_arity(signature: inspect.Signature) -> tuple[int, float] | None:
    """How many positional arguments (and no keywords) bind to ``signature``: (fewest, most),
    or None when a required keyword-only parameter makes every such call fail."""
    fewest, most = 0, 0.0
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            most += 1
            if parameter.default is parameter.empty:
                fewest += 1
        elif parameter.kind is parameter.VAR_POSITIONAL:
            most = float("inf")
        elif parameter.kind is parameter.KEYWORD_ONLY and parameter.default is parameter.empty:
            return None
    return fewest, most


def make_definition(
    target: Callable[..., Any],
    *,
    name: str | None,
    cpu_bound: bool,
    options: JobOptions,
    retry: BackoffPolicy | None,
    hooks: Hooks,
    requeue_delay: float,
    is_class: bool,
) -> JobDefinition:
    job_name = check_name(name if name is not None else target.__name__, "job name")
    if is_class:
        run = getattr(target, "run", None)
        if run is None or not callable(run):
            raise ConfigurationError(f"job class {target.__qualname__} must define a run() method")
        body: Callable[..., Any] = run
        run_signature = _without_self(_signature(run))
        init_signature: inspect.Signature | None = _constructor_signature(target)
    else:
        body = target
        run_signature = _signature(target)
        init_signature = None
    is_async = inspect.iscoroutinefunction(body)
    if cpu_bound:
        if is_async:
            raise ConfigurationError(
                f"job {job_name!r}: cpu_bound=True needs a plain (def) function; "
                "an async body runs on the event loop, not in a worker process"
            )
        if "<locals>" in target.__qualname__ or target.__name__ == "<lambda>":
            raise ConfigurationError(
                f"job {job_name!r}: cpu_bound jobs must be declared at module level so that "
                "worker processes can import them"
            )
    mode = RunMode.INLINE if is_async else RunMode.PROCESS if cpu_bound else RunMode.THREAD
    return JobDefinition(
        name=job_name, target=target, is_class=is_class, mode=mode, options=options, retry=retry,
        hooks=hooks, requeue_delay=requeue_delay, run_signature=run_signature, init_signature=init_signature,
        positional_arity=_positional_arity(run_signature),
    )


def _signature(function: Callable[..., Any]) -> inspect.Signature:
    """The signature with annotations resolved where possible (for readable error messages)."""
    try:
        return inspect.signature(function, eval_str=True)
    except Exception:  # an annotation that cannot be resolved here: show it as written
        return inspect.signature(function)


def _constructor_signature(cls: Any) -> inspect.Signature:  # Any: mypy refuses cls.__init__ on a type
    """What ``cls(...)`` accepts. Without an ``__init__`` of its own, the signature read from
    ``object.__init__`` is ``(*args, **kwargs)``, yet ``cls(1)`` fails ("takes no arguments");
    with only a ``__new__`` of its own, that ``__new__`` decides."""
    if cls.__init__ is not object.__init__:
        return _without_self(_signature(cls.__init__))
    if cls.__new__ is not object.__new__:
        return _without_self(_signature(cls.__new__), "cls")
    return inspect.Signature()


def _without_self(signature: inspect.Signature, first: str = "self") -> inspect.Signature:
    params = list(signature.parameters.values())
    if params and params[0].name == first:
        params = params[1:]
    return signature.replace(parameters=params)


class Registry:
    """The jobs one engine knows, by stored name."""

    def __init__(self) -> None:
        self._definitions: dict[str, JobDefinition] = {}

    def add(self, definition: JobDefinition) -> None:
        existing = self._definitions.get(definition.name)
        if existing is not None and existing.target is not definition.target:
            raise DuplicateJobError(
                f"a job named {definition.name!r} is already declared ({existing.target.__module__}."
                f"{existing.target.__qualname__}); give one of them another name with name=..."
            )
        self._definitions[definition.name] = definition

    def get(self, name: str) -> JobDefinition | None:
        return self._definitions.get(name)

    def require(self, name: str) -> JobDefinition:
        definition = self._definitions.get(name)
        if definition is None:
            known = ", ".join(sorted(self._definitions)) or "none"
            raise UnknownJobError(f"no job named {name!r} is declared on this engine (declared: {known})")
        return definition

    def __iter__(self) -> Iterator[JobDefinition]:
        return iter(self._definitions.values())

    def __len__(self) -> int:
        return len(self._definitions)

    def __contains__(self, name: object) -> bool:
        return name in self._definitions
