"""Enqueue options and queue settings: validated, immutable, keyword-only.

``JobOptions`` holds only what a caller set; layering (engine defaults ← the job's
declaration ← ``.options(...)``) is a merge of set fields, resolved once per enqueue.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, Never, TypedDict

from . import _json
from ._errors import ConfigurationError
from ._records import JobState
from ._retry import BackoffPolicy, coerce_backoff
from ._validation import MAX_DELAY, check_bool, check_int, check_name, seconds_from

DEFAULT_QUEUE: Final = "default"
DEFAULT_PRIORITY: Final = 50
DEFAULT_MAX_ATTEMPTS: Final = 5
DEFAULT_CONCURRENCY: Final = 10
PRIORITY_RANGE: Final = (0, 10_000)
MAX_ATTEMPTS_LIMIT: Final = 1_000_000


RETENTION_STATES: Final = ("completed", "failed", "canceled")
# A unique job holds its key in these states whatever its config says: it enters as waiting
# and moves between them (claim, retry, snooze, rescue) without ever asking the database.
PENDING_STATES: Final = (JobState.WAITING, JobState.SNOOZED, JobState.CLAIMED, JobState.RUNNING)
DEFAULT_UNIQUE_STATES: Final = PENDING_STATES


@dataclass(frozen=True, slots=True, kw_only=True)
class UniqueConfig:
    """At most one job per key in ``states``; ``unique=True`` means ``UniqueConfig()``.

    key      what identifies "the same job" (default: a digest of the job's arguments and,
             for a class job, its constructor arguments, with dict keys in any order); the
             job's name is always part of it, so keys of different jobs never collide
    period   seconds (or a timedelta): the key holds within a time bucket of that length
             (``86400``: once a day); default: for as long as a holder is in ``states``
    states   the states in which a job holds its key: every pending state (waiting, snoozed,
             claimed, running — the default: from its enqueue until it finishes), plus any of
             completed, failed and canceled to keep holding it after the job ended
             (``list(JobState)``: one job per key and period, whatever became of it)
    on_conflict  "drop": keep the existing job and return it (the default); "replace":
             cancel the existing job if it has not started (or has run longer than
             ``replace_running_after``, so it counts as stuck) and store the new one; a
             younger running job is never canceled: the new one yields to it
    """

    key: str | None = None
    period: float | timedelta | None = None
    states: Sequence[JobState | str] = DEFAULT_UNIQUE_STATES
    on_conflict: Literal["drop", "replace"] = "drop"
    replace_running_after: float | timedelta = 3600.0

    def __post_init__(self) -> None:
        _check_unique_key(self.key)
        if self.period is not None:
            object.__setattr__(self, "period", seconds_from(self.period, "unique period", allow_zero=False))
        try:
            states = tuple(dict.fromkeys(JobState(s) for s in self.states))
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"unique states must be job states ({', '.join(s.value for s in JobState)}), got {self.states!r}"
            ) from None
        missing = [s.value for s in PENDING_STATES if s not in states]
        if missing:
            raise ConfigurationError(
                f"unique states must include every pending state (waiting, snoozed, claimed, running): a job "
                f"holds its key from its enqueue until it finishes; add {', '.join(missing)} "
                f"(completed, failed and canceled are optional: they keep the key held after the job ends), "
                f"got {[s.value for s in states]!r}"
            )
        object.__setattr__(self, "states", states)
        if self.on_conflict not in ("drop", "replace"):
            raise ConfigurationError(f"on_conflict must be 'drop' or 'replace', got {self.on_conflict!r}")
        object.__setattr__(self, "replace_running_after",
                           seconds_from(self.replace_running_after, "replace_running_after", allow_zero=False))

    def key_for(self, name: str, args_json: str, kwargs_json: str, now: datetime,
                constructor_args_json: str = "[]") -> str:
        """The key a job of ``name`` with these (JSON-encoded) arguments holds at ``now``.

        The digest is taken over canonical JSON (object keys sorted at every depth), so
        ``f.enqueue(a=1, b=2)`` and ``f.enqueue(b=2, a=1)`` are the same job; constructor
        arguments count when there are any (function jobs keep the digest they always had).
        """
        identity = self.key
        if identity is None:
            parts = [_json.canonical(args_json), _json.canonical(kwargs_json)]
            constructor_args = _json.canonical(constructor_args_json)
            if constructor_args != "[]":
                parts.append(constructor_args)
            # Imported here: OpenSSL's digests weigh on every process, and only unique jobs
            # without a key need them (docs/decisions/2026-12-04-lazy-hashlib.md).
            import hashlib

            identity = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]
        key = f"{name}:{identity}"
        if self.period is not None:
            period = seconds_from(self.period, "unique period", allow_zero=False)
            key += f"@{int(now.timestamp() // period)}"
        return key


def _check_unique_key(key: object) -> None:
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 200):
        raise ConfigurationError(f"unique key must be a string of 1-200 characters, got {key!r}")


class RetentionDict(TypedDict, total=False):
    """Seconds (or a timedelta) to keep finished jobs before deleting them; None: for ever."""

    completed: float | timedelta | None
    failed: float | timedelta | None
    canceled: float | timedelta | None


class OptionsDict(TypedDict, total=False):
    """The keyword arguments ``.options(...)`` accepts (typed for editors and mypy)."""

    queue: str
    priority: int
    delay: float | timedelta
    run_at: datetime
    max_attempts: int
    timeout: float | timedelta | None
    retry: BackoffPolicy
    constructor_args: Sequence[object]
    meta: Mapping[str, object]
    connection: object
    unique: bool | UniqueConfig
    retention: RetentionDict
    concurrency_key: str | Callable[..., str | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class JobOptions:
    """Options a caller set; ``None`` means "not set here" (``timeout_set`` tells a set None)."""

    queue: str | None = None
    priority: int | None = None
    delay: float | None = None
    run_at: datetime | None = None
    max_attempts: int | None = None
    timeout: float | None = None
    timeout_set: bool = False
    retry: BackoffPolicy | None = None
    constructor_args: tuple[object, ...] | None = None
    meta: Mapping[str, object] | None = None
    connection: object | None = None
    unique: UniqueConfig | bool | None = None  # False: explicitly not unique
    retention: Mapping[str, float | None] | None = None
    # A key, or a callable given the job's arguments that returns one (or None: no key).
    concurrency_key: str | Callable[..., str | None] | None = None

    @property
    def unique_config(self) -> UniqueConfig | None:
        return self.unique if isinstance(self.unique, UniqueConfig) else None

    def merged(self, other: JobOptions) -> JobOptions:
        """These options with every field ``other`` set taken from ``other``."""
        changes: dict[str, Any] = {}
        for f in fields(other):
            value = getattr(other, f.name)
            if f.name == "timeout":
                if other.timeout_set:
                    changes["timeout"] = value
                    changes["timeout_set"] = True
            elif f.name != "timeout_set" and value is not None:
                changes[f.name] = value
        # delay and run_at are two spellings of one setting: the later layer's wins whole.
        if other.delay is not None:
            changes["run_at"] = None
        elif other.run_at is not None:
            changes["delay"] = None
        return replace(self, **changes)




def make_options(given: Mapping[str, object], *, declaring: bool = False) -> JobOptions:
    """Validate keyword options into ``JobOptions``; every bad value raises ConfigurationError."""
    unknown = sorted(set(given) - _ALLOWED)
    if unknown:
        raise ConfigurationError(
            f"unknown job option(s) {', '.join(map(repr, unknown))}; accepted: {', '.join(sorted(_ALLOWED))}"
        )
    if "delay" in given and "run_at" in given:
        raise ConfigurationError("give either delay or run_at, not both")
    if declaring and "connection" in given:
        raise ConfigurationError("connection= is an enqueue-time option, not a declaration option")
    values: dict[str, Any] = {name: _CHECKS[name](value) for name, value in given.items() if name != "retry"}
    if "retry" in given:
        values["retry"] = coerce_backoff(given["retry"], storable=not declaring)
    if "timeout" in given:
        values["timeout_set"] = True
    return JobOptions(**values)


def _check_priority(value: object) -> int:
    return check_int(value, "priority", minimum=PRIORITY_RANGE[0], maximum=PRIORITY_RANGE[1])


def _check_timeout(value: object) -> float | None:
    return None if value is None else seconds_from(value, "timeout", allow_zero=False)


def _check_connection(value: object) -> object:
    if value is None:
        raise ConfigurationError("connection must be a database connection, got None")
    return value


def _check_run_at(value: object) -> datetime:
    if not isinstance(value, datetime):
        raise ConfigurationError(f"run_at must be a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConfigurationError(
            f"run_at must be timezone-aware (for example datetime.now(timezone.utc)), got naive {value!r}"
        )
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ConfigurationError(
            f"run_at must be between 0001-01-01 and 9999-12-31 in UTC, got {value.isoformat()}"
        ) from None
    return value


def _check_delay(value: object) -> float:
    return seconds_from(value, "delay", maximum=MAX_DELAY)


def _check_constructor_args(value: object) -> tuple[object, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ConfigurationError(f"constructor_args must be a list of JSON values, got {value!r}")
    _json.dumps(list(value), "constructor_args")
    return tuple(value)


def _check_meta(value: object) -> Mapping[str, object]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigurationError(f"meta must be a dict with string keys, got {value!r}")
    _json.dumps(dict(value), "meta")
    return dict(value)


def _check_unique(value: object) -> UniqueConfig | bool:
    if value is True:
        return UniqueConfig()
    if value is False or isinstance(value, UniqueConfig):
        return value
    raise ConfigurationError(f"unique must be True, False or a UniqueConfig, got {value!r}")


MAX_CONCURRENCY_KEY: Final = 200


def check_concurrency_key(value: object, what: str = "concurrency_key") -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_CONCURRENCY_KEY:
        raise ConfigurationError(
            f"{what} must be a string of 1-{MAX_CONCURRENCY_KEY} characters (or a callable given the "
            f"job's arguments that returns one, or None), got {value!r}"
        )
    return value


def _check_concurrency_key_option(value: object) -> str | Callable[..., str | None]:
    if callable(value):
        return value
    return check_concurrency_key(value)


def check_retention(value: object, what: str = "retention") -> dict[str, float | None]:
    """``{"completed": seconds, "failed": None, ...}``: seconds, a timedelta, or None (for ever)."""
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{what} must be a dict like {{'completed': 3600, 'failed': None}}, got {value!r}")
    unknown = sorted(set(value) - set(RETENTION_STATES))
    if unknown:
        accepted = ", ".join(RETENTION_STATES)
        raise ConfigurationError(f"{what} takes {accepted}; unknown: {', '.join(map(repr, unknown))}")
    return {state: None if seconds is None else seconds_from(seconds, f"{what}[{state!r}]")
            for state, seconds in value.items()}


_ALLOWED = frozenset(OptionsDict.__annotations__)
_CHECKS: dict[str, Callable[[object], object]] = {
    "queue": lambda value: check_name(value, "queue"),
    "priority": _check_priority,
    "delay": _check_delay,
    "run_at": _check_run_at,
    "max_attempts": lambda value: check_int(value, "max_attempts", minimum=1, maximum=MAX_ATTEMPTS_LIMIT),
    "timeout": _check_timeout,
    "constructor_args": _check_constructor_args,
    "meta": _check_meta,
    "connection": _check_connection,
    "unique": _check_unique,
    "retention": check_retention,
    "concurrency_key": _check_concurrency_key_option,
}


QUEUE_SETTINGS: Final = ("concurrency", "priority", "global_concurrency", "retention", "rate_limit",
                         "concurrency_per_key", "rate_limit_per_key")

class Unchanged(enum.Enum):
    """A setting left out of a call that changes settings (where ``None`` means "remove")."""

    UNCHANGED = "unchanged"


UNCHANGED: Final = Unchanged.UNCHANGED

# A window keeps one start time per allowed start (one row per queue, rewritten by each
# limited claim): a bound that keeps that row small. A larger quota fits a shorter window
# (1,000 a second rather than 60,000 a minute).
MAX_RATE_STARTS: Final = 10_000
MAX_RATE_PERIOD: Final = 86_400.0


def check_rate_limit(value: object, what: str = "rate_limit") -> tuple[int, float]:
    """``(starts, seconds)``: at most ``starts`` job starts in any window of ``seconds``."""
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise ConfigurationError(f"{what} must be (starts, seconds), e.g. (20, 1.0) for 20 a second, got {value!r}")
    starts = check_int(value[0], f"{what}'s starts", minimum=1, maximum=MAX_RATE_STARTS)
    seconds = seconds_from(value[1], f"{what}'s window", allow_zero=False)
    if not 0.001 <= seconds <= MAX_RATE_PERIOD:
        raise ConfigurationError(f"{what}'s window must be between 0.001 and {MAX_RATE_PERIOD:g} seconds "
                                 f"(a day), got {value[1]!r}")
    return starts, seconds


_RATE_TEXT: Final = re.compile(r"(?P<starts>\d+)/(?P<count>\d+(?:\.\d+)?)?(?P<unit>ms|s|m|h)")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_NO_LIMIT: Final = ("none", "off")


def parse_rate_limit(text: str, what: str = "rate limit") -> tuple[int, float] | None:
    """A rate limit as people write it: ``20/1s`` → (20, 1.0), ``100/m`` → (100, 60.0),
    ``5/500ms`` → (5, 0.5); ``none`` (or ``off``) → None, no limit."""
    if text.strip().lower() in _NO_LIMIT:
        return None
    match = _RATE_TEXT.fullmatch(text.strip().lower())
    if match is None:
        raise ConfigurationError(f"{what} takes N/WINDOW, e.g. 20/1s, 100/1m, 5/500ms (or 'none'), got {text!r}")
    seconds = float(match["count"] or 1) * _UNIT_SECONDS[match["unit"]]
    return check_rate_limit((int(match["starts"]), seconds), what)


def format_rate(rate: tuple[int, float]) -> str:
    """(20, 1.0) → ``20/1s``; (5, 0.5) → ``5/500ms``; (100, 60.0) → ``100/1m``."""
    starts, seconds = rate
    for unit, size in (("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{starts}/{seconds / size:g}{unit}"
    if seconds >= 1:
        return f"{starts}/{seconds!r}s"  # every digit: the text reads back as the same limit
    return f"{starts}/{int(seconds * 1000)}ms" if (seconds * 1000).is_integer() else f"{starts}/{seconds!r}s"


def check_no_unknown_settings(unknown: Mapping[str, object], what: str, accepted: Sequence[str]) -> None:
    """Refuse keyword arguments nobody declared, naming them and the accepted ones."""
    if unknown:
        raise ConfigurationError(
            f"unknown {what}(s) {', '.join(map(repr, sorted(unknown)))}; accepted: {', '.join(accepted)}"
        )


@dataclass(frozen=True, slots=True, init=False)
class QueueConfig:
    """Settings for a queue, written to the database when an engine listing it starts.

    A setting left as ``None`` keeps its stored value (a new queue gets concurrency 10 and
    priority 50). The paused state is never written from here, so a deploy cannot
    silently resume a queue someone paused. An unknown setting raises ConfigurationError.
    """

    concurrency: int | None
    priority: int | None
    global_concurrency: int | None
    retention: Mapping[str, float | timedelta | None] | None
    rate_limit: tuple[int, float] | None
    concurrency_per_key: int | None
    rate_limit_per_key: tuple[int, float] | None

    # ``**unknown: Never``: type checkers refuse any other keyword; at run time it gets a
    # ConfigurationError naming the accepted settings instead of Python's own TypeError.
    def __init__(self, *, concurrency: int | None = None, priority: int | None = None,
                 global_concurrency: int | None = None,
                 retention: Mapping[str, float | timedelta | None] | None = None,
                 rate_limit: tuple[int, float | timedelta] | None = None,
                 concurrency_per_key: int | None = None,
                 rate_limit_per_key: tuple[int, float | timedelta] | None = None, **unknown: Never) -> None:
        check_no_unknown_settings(unknown, "queue setting", QUEUE_SETTINGS)
        object.__setattr__(self, "concurrency", concurrency)
        object.__setattr__(self, "priority", priority)
        object.__setattr__(self, "global_concurrency", global_concurrency)
        object.__setattr__(self, "retention", retention)
        object.__setattr__(self, "rate_limit", None if rate_limit is None else check_rate_limit(rate_limit))
        object.__setattr__(self, "concurrency_per_key", None if concurrency_per_key is None
                           else check_concurrency_per_key(concurrency_per_key))
        object.__setattr__(self, "rate_limit_per_key", None if rate_limit_per_key is None
                           else check_rate_limit(rate_limit_per_key, "rate_limit_per_key"))
        self.__post_init__()

    def __post_init__(self) -> None:
        if self.retention is not None:
            object.__setattr__(self, "retention", check_retention(self.retention, "queue retention"))
        if self.concurrency is not None:
            check_int(self.concurrency, "concurrency", minimum=1, maximum=100_000)
        if self.priority is not None:
            check_int(self.priority, "queue priority", minimum=PRIORITY_RANGE[0], maximum=PRIORITY_RANGE[1])
        if self.global_concurrency is not None:
            check_int(self.global_concurrency, "global_concurrency", minimum=1, maximum=1_000_000)


def check_concurrency_per_key(value: object, what: str = "concurrency_per_key") -> int:
    return check_int(value, what, minimum=1, maximum=100_000)


def parse_concurrency_per_key(text: str, what: str = "concurrency per key") -> int | None:
    """A per-key limit as people write it: ``2`` → 2; ``none`` (or ``off``) → None, no limit."""
    value = text.strip().lower()
    if value in _NO_LIMIT:
        return None
    if not (value.isascii() and value.isdigit()):
        raise ConfigurationError(f"{what} takes a number of jobs, e.g. 2 (or 'none'), got {text!r}")
    return check_concurrency_per_key(int(value), what)


def check_queue_settings(
    *, concurrency: object = None, priority: object = None, paused: object = None, global_concurrency: object = None
) -> None:
    """Validate the keyword arguments of ``set_queue``-like calls."""
    QueueConfig(
        concurrency=concurrency,  # type: ignore[arg-type]
        priority=priority,  # type: ignore[arg-type]
        global_concurrency=global_concurrency,  # type: ignore[arg-type]
    )
    if paused is not None:
        check_bool(paused, "paused")
