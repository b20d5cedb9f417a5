"""Throughput charts: completed and failed jobs per time bucket, as bars for an inline SVG.

The numbers come from ``Engine.job_activity`` (buckets aligned on multiples of the bucket
size since the epoch); this module only lays them out. Every bucket of the window gets a
slot, empty ones included, so the time axis is honest. The template draws the SVG from
these numbers: nothing here is markup, so nothing here needs escaping.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol


class Activity(Protocol):
    """One bucket of ``Engine.job_activity``."""

    @property
    def queue(self) -> str: ...
    @property
    def start(self) -> datetime: ...
    @property
    def completed(self) -> int: ...
    @property
    def failed(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    width: float
    completed_y: float
    completed_height: float
    failed_y: float
    failed_height: float
    label: str  # the tooltip: when, and how many


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    completed: int  # totals over the window
    failed: int
    peak: int  # the tallest bar, in jobs


def window_start(now: datetime, *, span: float, step: float) -> datetime:
    """The start of the oldest bucket of a window of ``span`` seconds ending with ``now``'s bucket."""
    current = math.floor(now.timestamp() / step) * step
    return datetime.fromtimestamp(current - (_slots(span, step) - 1) * step, UTC)


@dataclass(frozen=True, slots=True)
class Series:
    """(completed, failed) per bucket of a window, oldest first."""

    first: float  # the oldest bucket's start, in seconds since the epoch
    step: float
    values: tuple[tuple[int, int], ...]


def activity_series(buckets: Iterable[Activity], *, now: datetime, span: float = 3600,
                    step: float = 60) -> tuple[dict[str, Series], Series]:
    """The series of each queue that had activity in the window, and of all queues together."""
    first = window_start(now, span=span, step=step).timestamp()
    slots = _slots(span, step)
    per_queue: dict[str, list[tuple[int, int]]] = {}
    total = [(0, 0)] * slots
    for bucket in buckets:
        index = round((bucket.start.timestamp() - first) / step)
        if not 0 <= index < slots:
            continue  # finished after `now` was read, or before the window
        values = per_queue.setdefault(bucket.queue, [(0, 0)] * slots)
        done, failed = values[index]
        values[index] = (done + bucket.completed, failed + bucket.failed)
        done, failed = total[index]
        total[index] = (done + bucket.completed, failed + bucket.failed)
    queues = {name: Series(first, step, tuple(values)) for name, values in per_queue.items()}
    return queues, Series(first, step, tuple(total))


def empty_series(*, now: datetime, span: float = 3600, step: float = 60) -> Series:
    return Series(window_start(now, span=span, step=step).timestamp(), step, ((0, 0),) * _slots(span, step))


def _slots(span: float, step: float) -> int:
    return max(1, math.ceil(span / step))


def chart(series: Series, *, width: int = 240, height: int = 48) -> Chart:
    """Stacked bars (completed below, failed above) scaled to the busiest bucket."""
    values = series.values
    peak = max((done + failed for done, failed in values), default=0)
    scale = (height - 1) / peak if peak else 0.0
    slot = width / max(1, len(values))
    bars = []
    for index, (done, failed) in enumerate(values):
        done_height = round(done * scale, 2)
        failed_height = round(failed * scale, 2)
        at = datetime.fromtimestamp(series.first + index * series.step, UTC)
        bars.append(Bar(
            x=round(index * slot + slot * 0.1, 2), width=round(slot * 0.8, 2),
            completed_y=round(height - done_height, 2), completed_height=done_height,
            failed_y=round(height - done_height - failed_height, 2), failed_height=failed_height,
            label=f"{at:%H:%M} UTC: {done} completed, {failed} failed",
        ))
    return Chart(width=width, height=height, bars=tuple(bars), completed=sum(d for d, _ in values),
                 failed=sum(f for _, f in values), peak=peak)
