"""Backoff policies: how long a failed attempt waits before the next one.

Built-in policies are frozen dataclasses that serialise to a small JSON object, so a policy
given at ``enqueue`` travels with the job. A plain callable ``(attempt) -> seconds`` is
accepted where a job is declared (it lives in code, not in the database).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

from ._errors import ConfigurationError
from ._validation import check_int, check_number, seconds_from

_MAX_DELAY = 3600.0


def _check_jitter(jitter: object) -> None:
    check_number(jitter, "jitter (a fraction)", minimum=0, maximum=0.99)


def _spread(seconds: float, jitter: float, cap: float) -> float:
    """``seconds`` (at most ``cap``) spread by ±``jitter``, then capped again: the cap holds
    after jitter too, while delays at the cap still spread below it."""
    seconds = min(seconds, cap)
    if jitter == 0:
        return seconds
    return min(max(0.0, seconds * random.uniform(1 - jitter, 1 + jitter)), cap)


@runtime_checkable
class BackoffPolicy(Protocol):
    """Seconds to wait after failed attempt number ``attempt`` (1 for the first)."""

    def delay(self, attempt: int) -> float: ...


@dataclass(frozen=True, slots=True)
class ExponentialBackoff:
    """``base * factor ** (attempt - 1)`` seconds, spread by ±``jitter`` (a fraction), capped.

    The default policy: about 1 s, 2 s, 4 s, … up to an hour.
    """

    base: float = 1.0
    factor: float = 2.0
    max_delay: float = _MAX_DELAY
    jitter: float = 0.1

    def __post_init__(self) -> None:
        seconds_from(self.base, "ExponentialBackoff base")
        seconds_from(self.max_delay, "ExponentialBackoff max_delay")
        check_number(self.factor, "ExponentialBackoff factor", minimum=1, maximum=100)
        _check_jitter(self.jitter)

    def delay(self, attempt: int) -> float:
        exponent = min(max(attempt - 1, 0), 64)  # beyond 2**64 every delay is capped anyway
        return _spread(self.base * self.factor**exponent, self.jitter, self.max_delay)


@dataclass(frozen=True, slots=True)
class LinearBackoff:
    """``step * attempt`` seconds, spread by ±``jitter``, capped."""

    step: float = 5.0
    max_delay: float = _MAX_DELAY
    jitter: float = 0.0

    def __post_init__(self) -> None:
        seconds_from(self.step, "LinearBackoff step")
        seconds_from(self.max_delay, "LinearBackoff max_delay")
        _check_jitter(self.jitter)

    def delay(self, attempt: int) -> float:
        return _spread(self.step * max(attempt, 1), self.jitter, self.max_delay)


@dataclass(frozen=True, slots=True)
class ConstantBackoff:
    """The same ``seconds`` after every failed attempt."""

    seconds: float = 10.0

    def __post_init__(self) -> None:
        seconds_from(self.seconds, "ConstantBackoff seconds")

    def delay(self, attempt: int) -> float:
        return self.seconds


@dataclass(frozen=True, slots=True)
class PolynomialBackoff:
    """``attempt ** exponent`` seconds, capped: RedwoodJS's ``attempts ** 4`` by default."""

    exponent: int = 4
    max_delay: float = _MAX_DELAY * 24

    def __post_init__(self) -> None:
        check_int(self.exponent, "PolynomialBackoff exponent", minimum=1, maximum=10)
        seconds_from(self.max_delay, "PolynomialBackoff max_delay")

    def delay(self, attempt: int) -> float:
        return float(min(max(attempt, 1) ** self.exponent, self.max_delay))


@dataclass(frozen=True, slots=True)
class CallableBackoff:
    """Wraps a user's ``(attempt) -> seconds`` callable; lives in code only, never stored."""

    function: Callable[[int], float]

    def delay(self, attempt: int) -> float:
        return seconds_from(self.function(attempt), "the backoff callable's result")


StorableBackoff = ExponentialBackoff | LinearBackoff | ConstantBackoff | PolynomialBackoff
DEFAULT_BACKOFF = ExponentialBackoff()

_KINDS: dict[str, type[StorableBackoff]] = {
    "exponential": ExponentialBackoff,
    "linear": LinearBackoff,
    "constant": ConstantBackoff,
    "polynomial": PolynomialBackoff,
}
_NAMES = {cls: kind for kind, cls in _KINDS.items()}


def coerce_backoff(value: object, *, storable: bool) -> BackoffPolicy:
    """Validate a ``retry=`` value: a built-in policy, or (where declared) a callable."""
    if isinstance(value, tuple(_KINDS.values())):
        return value  # type: ignore[return-value]
    if callable(value) and not isinstance(value, type):
        if storable:
            raise ConfigurationError(
                "retry= at enqueue time must be a built-in policy (ExponentialBackoff, "
                "LinearBackoff, ConstantBackoff, PolynomialBackoff); a callable is stored in "
                "no database, so declare it on the job: @engine.job(retry=...)"
            )
        return CallableBackoff(value)
    raise ConfigurationError(
        f"retry must be a backoff policy such as ExponentialBackoff() or a callable "
        f"(attempt) -> seconds, got {value!r}"
    )


def backoff_to_json(policy: BackoffPolicy) -> dict[str, Any]:
    """The stored form of a built-in policy."""
    kind = _NAMES.get(type(policy))  # type: ignore[arg-type]
    if kind is None:
        raise ConfigurationError(f"{policy!r} cannot be stored with a job")
    return {"kind": kind, **asdict(policy)}  # type: ignore[call-overload]


def backoff_from_json(data: object) -> BackoffPolicy | None:
    """Rebuild a stored policy; anything unrecognised falls back to ``None`` (use the default)."""
    if not isinstance(data, dict):
        return None
    fields = dict(data)
    cls = _KINDS.get(str(fields.pop("kind", "")))
    if cls is None:
        return None
    try:
        return cls(**fields)
    except (TypeError, ConfigurationError):
        return None
