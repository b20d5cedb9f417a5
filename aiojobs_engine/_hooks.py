"""Hooks: user callables around enqueue and around each attempt, per job or engine-wide.

A hook may be sync or async. A hook that raises is logged and changes nothing (the job is
neither lost nor failed because of it), except ``on_before_add``, whose veto is its purpose.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Final

from ._errors import ConfigurationError
from ._log import Event, logger

HOOK_NAMES: Final = (
    "on_before_add",
    "okay_to_run",
    "before_perform",
    "after_perform",
    "on_success",
    "on_failure",
    "on_max_attempts_exhausted",
)

Hook = Callable[..., Any] | Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Hooks:
    """Callables for each hook point; several may be chained (engine-wide first, then the job's).

    on_before_add(request) -> bool | dict | None  False vetoes the enqueue (returns None);
                                                a dict is added to the job's meta
    okay_to_run(record) -> bool | float | None  False or seconds defers the claimed job
    before_perform(record)
    after_perform(record, outcome: str)         after every attempt, whatever its end
    on_success(record, result)
    on_failure(record, exception)               each failed attempt
    on_max_attempts_exhausted(record, exception)
    """

    on_before_add: tuple[Hook, ...] = ()
    okay_to_run: tuple[Hook, ...] = ()
    before_perform: tuple[Hook, ...] = ()
    after_perform: tuple[Hook, ...] = ()
    on_success: tuple[Hook, ...] = ()
    on_failure: tuple[Hook, ...] = ()
    on_max_attempts_exhausted: tuple[Hook, ...] = ()

    def __bool__(self) -> bool:
        # Spelled out: this runs once per attempt, and fields() is slow on the hot path.
        return bool(self.on_before_add or self.okay_to_run or self.before_perform or self.after_perform
                    or self.on_success or self.on_failure or self.on_max_attempts_exhausted)

    @property
    def around_attempts(self) -> bool:
        """Hooks that run around attempts (all but ``on_before_add``)."""
        return bool(self.okay_to_run or self.before_perform or self.after_perform or self.on_success
                    or self.on_failure or self.on_max_attempts_exhausted)

    def added(self, point: str, hook: Hook) -> Hooks:
        check_hook(point, hook)
        return replace(self, **{point: (*getattr(self, point), hook)})

    def then(self, other: Hooks) -> Hooks:
        """These hooks followed by ``other``'s, point by point."""
        return Hooks(**{f.name: (*getattr(self, f.name), *getattr(other, f.name)) for f in fields(self)})


def hooks_from(given: Mapping[str, object]) -> Hooks:
    hooks = Hooks()
    for point, value in given.items():
        hooks = hooks.added(point, value)  # type: ignore[arg-type]
    return hooks


def check_hook(point: str, hook: object) -> None:
    if point not in HOOK_NAMES:
        raise ConfigurationError(f"unknown hook {point!r}; accepted: {', '.join(HOOK_NAMES)}")
    if not callable(hook):
        raise ConfigurationError(f"hook {point} must be callable, got {hook!r}")


async def call_hook(hook: Hook, *args: object) -> Any:
    result = hook(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


async def run_hooks(point: str, hooks: Iterable[Hook], *args: object, extra: dict[str, object]) -> list[Any]:
    """Call each hook in turn; one that raises is logged and skipped. Returns their results."""
    results = []
    for hook in hooks:
        try:
            results.append(await call_hook(hook, *args))
        except Exception:
            logger.exception(
                "hook %s (%s) raised; carrying on", point, getattr(hook, "__qualname__", hook),
                extra={**extra, "event": Event.HOOK_FAILED, "hook": point},
            )
    return results
