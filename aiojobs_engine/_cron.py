"""Cron expressions and their ticks: validation, time zones, daylight saving, missed ticks.

Expressions have five fields (minute hour day month weekday) or six, seconds first, as in
Sidequest (``*/10 * * * * *``: every ten seconds). Ticks are computed in the schedule's time
zone and stored as UTC instants.

Daylight saving, decided here once:
- a local time that does not exist (spring forward) runs at the first valid time after it
  (a daily ``30 2 * * *`` runs at 03:00 on that day);
- a local time that occurs twice (fall back) runs once, at its first occurrence, when the
  schedule names specific hours; schedules whose hour field is ``*``-based (``*/15 * * * *``)
  keep firing on every real interval through the repeated hour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from ._errors import ConfigurationError
from ._validation import check_name

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from croniter import croniter

# croniter (with dateutil) and zoneinfo are imported where a schedule needs them: an engine
# without schedules does not carry them (docs/decisions/2026-12-03-lazy-cron-and-process-imports.md).

MAX_SKIPPED_COUNT: Final = 1000  # missed ticks are counted up to this many (for the log line)


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """A recurring job: enqueue ``job`` with these arguments at every tick of ``expression``."""

    name: str
    expression: str
    timezone: str = "UTC"
    job: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # queue, priority, max_attempts, timeout, meta

    def __post_init__(self) -> None:
        check_name(self.name, "schedule name")
        check_name(self.job, "job name")
        check_expression(self.expression)
        zone(self.timezone)


def check_expression(expression: object) -> str:
    """A valid five- or six-field cron expression (six: seconds first), or ConfigurationError."""
    if not isinstance(expression, str):
        raise ConfigurationError(f"cron expression must be a string, got {expression!r}")
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise ConfigurationError(
            f"cron expression must have 5 fields (minute hour day month weekday) or 6 with "
            f"seconds first, got {len(fields)}: {expression!r}"
        )
    from croniter import croniter

    if not croniter.is_valid(expression, second_at_beginning=len(fields) == 6):
        raise ConfigurationError(f"invalid cron expression {expression!r}")
    return " ".join(fields)


def zone(name: object) -> ZoneInfo:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(name, str):
        raise ConfigurationError(f"time zone must be a name such as 'UTC' or 'Europe/Berlin', got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"unknown time zone {name!r}; use an IANA name such as 'UTC' or 'Europe/Berlin' "
            "(install the tzdata package where the system has no time zone database)"
        ) from None


def _iterator(expression: str, timezone: str, start: datetime, *, backwards: bool = False) -> croniter:
    from croniter import croniter

    return croniter(expression, start.astimezone(zone(timezone)), is_prev=backwards,
                    second_at_beginning=len(expression.split()) == 6)


def _hour_is_specific(expression: str) -> bool:
    fields = expression.split()
    hour = fields[2] if len(fields) == 6 else fields[1]
    return not hour.startswith("*")


def _counts(expression: str, tick: datetime) -> bool:
    """False for the second occurrence of a repeated local time, when the hours are specific."""
    if not _hour_is_specific(expression) or tick.tzinfo is None:
        return True
    # Converted from the instant, so fold is right (croniter's own fold cannot be trusted).
    local = tick.astimezone(UTC).astimezone(tick.tzinfo)
    repeated = local.replace(fold=0).utcoffset() != local.replace(fold=1).utcoffset()
    return not (repeated and local.fold == 1)


def next_tick(expression: str, timezone: str, after: datetime) -> datetime:
    """The first tick strictly after ``after``, as a UTC instant."""
    iterator = _iterator(expression, timezone, after)
    while True:
        tick: datetime = iterator.get_next(datetime)
        if _counts(expression, tick):
            return tick.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class DueTick:
    tick: datetime  # the newest tick in (after, now], as a UTC instant
    skipped: int  # earlier missed ticks in that window (capped at MAX_SKIPPED_COUNT)


def due_tick(expression: str, timezone: str, after: datetime, now: datetime) -> DueTick | None:
    """The tick to run now, if one came in ``(after, now]``; earlier ones there are skipped."""
    # croniter's get_prev excludes its start: begin just past now's whole second.
    start = now.replace(microsecond=0) + timedelta(seconds=1)
    backwards = _iterator(expression, timezone, start, backwards=True)
    while True:
        candidate: datetime = backwards.get_prev(datetime)
        latest = candidate.astimezone(UTC)
        if latest <= after:
            return None
        if _counts(expression, candidate):
            break
    skipped = 0
    forwards = _iterator(expression, timezone, after)
    while skipped < MAX_SKIPPED_COUNT:
        tick: datetime = forwards.get_next(datetime)
        if tick.astimezone(UTC) >= latest:
            break
        if _counts(expression, tick):
            skipped += 1
    return DueTick(latest, skipped)
