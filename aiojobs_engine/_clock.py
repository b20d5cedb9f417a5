"""Time, injectable: components ask a clock for "now" so tests can move time instead of sleeping.

With the system clock, time-dependent statements use the database's own clock (``now``
passed as ``None``), so engines on hosts with drifting clocks still agree on what is due
and on whose heartbeat is stale.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """A source of the current time as an aware UTC datetime."""

    def now(self) -> datetime: ...

    def for_database(self) -> datetime | None:
        """The ``now`` to hand to the backend: ``None`` means "use the database clock"."""
        ...


class SystemClock:
    """Wall-clock time; lets the database use its own clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def for_database(self) -> datetime | None:
        return None


class FrozenClock:
    """A clock that moves only when told to; every statement uses its time."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime.now(UTC)
        if start.tzinfo is None:
            raise ValueError("FrozenClock needs a timezone-aware start time")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def for_database(self) -> datetime | None:
        return self._now

    def advance(self, seconds: float | timedelta) -> datetime:
        self._now += seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
        return self._now

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("FrozenClock.set needs a timezone-aware time")
        self._now = when.astimezone(UTC)
