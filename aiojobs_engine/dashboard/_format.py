"""How values look on the pages: times, durations, JSON, and the notices actions leave.

Pure functions, used as Jinja filters. They return plain text: the templates escape it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from .._options import format_rate


def when(moment: datetime | None) -> str:
    """An absolute UTC time, to the second: ``2024-05-01 12:00:03 UTC``."""
    return "—" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def duration(seconds: float) -> str:
    """A short human duration: ``0.4 s``, ``12 s``, ``3 min``, ``2 h 5 min``, ``3 d``."""
    seconds = abs(seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    hours, rest = divmod(int(minutes), 60)
    if hours < 48:
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    return f"{hours // 24} d"


def relative(moment: datetime | None, now: datetime) -> str:
    """``3 min ago`` or ``in 2 h``."""
    if moment is None:
        return "—"
    delta = (moment - now).total_seconds()
    if abs(delta) < 0.5:
        return "now"
    return f"in {duration(delta)}" if delta > 0 else f"{duration(delta)} ago"


def pretty_json(value: Any) -> str:
    """JSON for people: indented, non-ASCII kept; never fails (odd values are shown as text)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def short_json(value: Any, limit: int = 80) -> str:
    """One line of JSON, cut to ``limit`` characters."""
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clip(text: object, limit: int = 120) -> str:
    """One line of text, cut to ``limit`` characters (an error message in a table cell)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def call_preview(args: list[Any], kwargs: dict[str, Any], limit: int = 80) -> str:
    """``(42, user="x")``-like text for the arguments of a job, cut to ``limit``."""
    parts = [short_json(a, limit) for a in args] + [f"{k}={short_json(v, limit)}" for k, v in kwargs.items()]
    text = ", ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class Notice:
    kind: str  # "ok" or "warn"
    text: str


# What an action tells on the page it redirects to: a fixed text per code, with one number
# at most, so a link cannot make the dashboard say anything else.
_NOTICES: Final[dict[str, tuple[str, str]]] = {
    "retried": ("ok", "Job {n} will run again now."),
    "not-retried": ("warn", "Job {n} was not retried: only completed, failed or canceled jobs can be."),
    "retry-conflict": ("warn", "The job was not retried: job {n} holds its unique key. Retry once job {n} has "
                               "finished, or cancel or delete job {n} first."),
    "retry-conflict-gone": ("warn", "Job {n} was not retried: another job took its unique key meanwhile. Try "
                                    "again."),
    "canceled": ("ok", "Job {n} was canceled."),
    "cancel-requested": ("ok", "Job {n} is running: its engine was asked to stop it."),
    "not-canceled": ("warn", "Job {n} was not canceled: it had already finished."),
    "deleted": ("ok", "Job {n} was deleted."),
    "not-deleted": ("warn", "Job {n} was not deleted: it is held by an engine, or gone."),
    "failed-retried": ("ok", "{n} failed jobs will run again now."),
    "failed-deleted": ("ok", "{n} failed jobs were deleted."),
    "paused": ("ok", "The queue is paused: engines claim none of its jobs until it is resumed."),
    "resumed": ("ok", "The queue is resumed."),
    "concurrency": ("ok", "The queue's concurrency is now {n} per engine."),
    "rate": ("ok", "The queue's rate limit is stored: every engine follows it within a poll interval."),
    "rate-removed": ("ok", "The queue has no rate limit any more."),
    "per-key": ("ok", "The queue's per-key limits are stored: every engine follows them within a poll interval."),
    "per-key-removed": ("ok", "The queue has no per-key limits any more."),
    "selection-empty": ("warn", "No job was selected: tick the jobs to act on, then choose the action."),
}


def rate(limit: tuple[int, float] | None) -> str:
    """A queue's rate limit as written: ``20/1s``, or ``none``."""
    return "none" if limit is None else format_rate(limit)


def per_key(concurrency: int | None, limit: tuple[int, float] | None) -> str:
    """A queue's per-key limits as read: ``2 at once, 5/1s``, ``2 at once``, ``5/1s``, or ``none``."""
    parts = [f"{concurrency} at once"] if concurrency else []
    return ", ".join([*parts, *([format_rate(limit)] if limit else [])]) or "none"


def notice(code: str | None, number: str | None) -> Notice | None:
    if code not in _NOTICES:
        return None
    kind, text = _NOTICES[code]
    n = number if number is not None and number.isascii() and number.isdigit() and len(number) < 20 else "?"
    return Notice(kind, text.format(n=n))
