"""Cron ticks: five and six fields, time zones, daylight saving, missed ticks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aiojobs_engine import ConfigurationError
from aiojobs_engine._cron import MAX_SKIPPED_COUNT, check_expression, due_tick, next_tick

BERLIN = "Europe/Berlin"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def test_five_and_six_field_expressions() -> None:
    assert check_expression("*/15  *  * * *") == "*/15 * * * *"
    assert next_tick("*/15 * * * *", "UTC", utc(2030, 1, 1, 12, 7)) == utc(2030, 1, 1, 12, 15)
    assert next_tick("*/10 * * * * *", "UTC", utc(2030, 1, 1, 12, 0, 1)) == utc(2030, 1, 1, 12, 0, 10)  # seconds first
    for bad in ("* * * *", "* * * * * * *", "61 * * * *", "* * 32 * *", 15):
        with pytest.raises(ConfigurationError):
            check_expression(bad)


def test_due_tick_is_the_newest_tick_since_the_last_one() -> None:
    now = utc(2030, 1, 1, 12, 0, 30)
    assert due_tick("*/15 * * * *", "UTC", utc(2030, 1, 1, 12, 0), now) is None  # ran already
    due = due_tick("*/15 * * * *", "UTC", now - timedelta(hours=2), now)
    assert due is not None and due.tick == utc(2030, 1, 1, 12, 0) and due.skipped == 7
    on_the_tick = due_tick("0 12 * * *", "UTC", utc(2029, 12, 31, 12, 0), utc(2030, 1, 1, 12, 0))
    assert on_the_tick is not None and on_the_tick.tick == utc(2030, 1, 1, 12, 0)
    flood = due_tick("* * * * * *", "UTC", now - timedelta(days=7), now)
    assert flood is not None and flood.skipped == MAX_SKIPPED_COUNT  # counted up to a cap, quickly


def test_time_zones_follow_local_wall_time() -> None:
    # 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
    assert next_tick("0 9 * * *", BERLIN, utc(2030, 1, 10)) == utc(2030, 1, 10, 8)
    assert next_tick("0 9 * * *", BERLIN, utc(2030, 7, 10)) == utc(2030, 7, 10, 7)


def test_a_local_time_that_does_not_exist_runs_at_the_first_valid_time() -> None:
    # 2026-03-29: Berlin jumps from 02:00 to 03:00; a daily 02:30 runs at 03:00 (01:00 UTC).
    assert next_tick("30 2 * * *", BERLIN, utc(2026, 3, 28, 23)) == utc(2026, 3, 29, 1)
    assert next_tick("30 2 * * *", BERLIN, utc(2026, 3, 29, 1)) == utc(2026, 3, 30, 0, 30)


def test_a_repeated_local_time_runs_once_for_specific_hours_and_every_time_for_wildcards() -> None:
    # 2026-10-25: Berlin goes from 03:00 back to 02:00; 02:30 happens at 00:30 and 01:30 UTC.
    assert next_tick("30 2 * * *", BERLIN, utc(2026, 10, 25, 0)) == utc(2026, 10, 25, 0, 30)
    assert next_tick("30 2 * * *", BERLIN, utc(2026, 10, 25, 0, 31)) == utc(2026, 10, 26, 1, 30)
    assert due_tick("30 2 * * *", BERLIN, utc(2026, 10, 25, 0, 31), utc(2026, 10, 25, 1, 45)) is None
    half_hours = [utc(2026, 10, 25, 0, 0)]
    for _ in range(4):
        half_hours.append(next_tick("*/30 * * * *", BERLIN, half_hours[-1]))
    assert [t.strftime("%H:%M") for t in half_hours] == ["00:00", "00:30", "01:00", "01:30", "02:00"]
