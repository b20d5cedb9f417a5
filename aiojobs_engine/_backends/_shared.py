"""What both backends share: how unique states and retention are stored, how the rows
an ``INSERT … ON CONFLICT DO NOTHING`` returned line up with the jobs that were asked for,
and what a statement that ran into the unique-key index means to the caller."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from .. import _json
from .._errors import BackendError, UniqueConflictError
from .._records import JobRecord, JobState
from ._protocol import JobInsert, QueueChange, Retention


class UniqueViolation(BackendError):
    """A statement ran into the unique-key index (internal to the backends).

    Inserts never do (ON CONFLICT DO NOTHING), nor do the engine's own transitions (a job
    holds its key in every pending state). Only a retry, which gives a finished job its key
    back, can: the backend turns it into a ``UniqueConflictError`` there.
    """


def retry_conflict(job_id: int, job: JobRecord | None, holders: Sequence[JobRecord]) -> UniqueConflictError:
    """The error for a retry of ``job`` refused because ``holders`` (read just after) hold its key."""
    key = None if job is None else job.unique_key
    holder = next((h for h in holders if h.id != job_id), None)
    if holder is None:
        message = (f"job {job_id} cannot be retried now: another job took its unique key {key!r} meanwhile "
                   "and has just finished; try again")
    elif holder.is_terminal:
        message = (f"job {job_id} cannot be retried: job {holder.id}, {holder.state}, holds its unique key "
                   f"{key!r} (its unique states include {holder.state}); delete job {holder.id} first")
    else:
        message = (f"job {job_id} cannot be retried: job {holder.id} ({holder.state}) holds its unique key "
                   f"{key!r}; cancel job {holder.id}, or retry once it has finished")
    return UniqueConflictError(message, job_id=job_id, unique_key=key,
                               holder_id=None if holder is None else holder.id)


def states_text(states: Sequence[JobState]) -> str | None:
    """The stored form of unique states: ``,waiting,running,`` (matched with ``,state,``)."""
    return "," + ",".join(s.value for s in states) + "," if states else None


def inserted_records(inserts: Sequence[JobInsert], rows: Sequence[Any], read_time: Callable[[Any], datetime | None],
                     *, stored_json: bool = False) -> list[JobRecord | None]:
    """Each insert's record, or None where its unique key was taken (the row was not inserted).

    ``rows`` are what the insert returned of the rows it stored: ``id``, ``unique_key``,
    ``inserted_at`` and ``available_at`` (the columns the database chose), in insertion (id)
    order. The inserts without a unique key always go in, and one with a key went in if the
    next row carries that key. The rest of each record is the insert's own data: a new row
    holds nothing else, so reading it back would only cost time. ``stored_json``: the rows
    also carry the JSON columns as stored (jsonb writes some numbers differently), and the
    record decodes those, as a later read would.
    """
    ordered = sorted(rows, key=lambda row: row["id"])
    result: list[JobRecord | None] = []
    position = 0
    for insert in inserts:
        row = ordered[position] if position < len(ordered) else None
        if row is not None and (insert.unique_key is None or row["unique_key"] == insert.unique_key):
            texts = ((row["args"], row["kwargs"], row["constructor_args"], row["meta"], row["retry"]) if stored_json
                     else (insert.args_json, insert.kwargs_json, insert.constructor_args_json, insert.meta_json,
                           insert.retry_json))
            result.append(_new_record(insert, row["id"], read_time(row["inserted_at"]),
                                      read_time(row["available_at"]), *texts))
            position += 1
        else:
            result.append(None)
    return result


def _new_record(insert: JobInsert, job_id: int, inserted_at: datetime | None, available_at: datetime | None,
                args: str, kwargs: str, constructor_args: str, meta: str, retry: str | None) -> JobRecord:
    assert inserted_at is not None and available_at is not None
    return JobRecord(
        id=job_id, queue=insert.queue, name=insert.name, args=_json_value(args, []), kwargs=_json_value(kwargs, {}),
        constructor_args=_json_value(constructor_args, []), state=JobState.WAITING, priority=insert.priority,
        attempt=0, max_attempts=insert.max_attempts, timeout=insert.timeout, inserted_at=inserted_at,
        available_at=available_at, unique_key=insert.unique_key, rescheduled_from=insert.rescheduled_from,
        concurrency_key=insert.concurrency_key,
        meta=_json_value(meta, {}), retry=_json.loads(retry),
    )


def _json_value(text: str, empty: Any) -> Any:
    if text == "[]" or text == "{}":
        return type(empty)()
    return _json.loads(text)


def keep_value(keep: dict[str, float | None] | object, state: str) -> float | None:
    """A job's or queue's retention for ``state`` as stored: NULL unset, negative kept for ever."""
    if not isinstance(keep, dict) or state not in keep:
        return None
    seconds = keep[state]
    return -1.0 if seconds is None else float(seconds)


def default_keep(seconds: float | None) -> float:
    """The engine's retention as stored in statements: negative means kept for ever."""
    return -1.0 if seconds is None else float(seconds)


def keep_defaults(retention: Retention) -> dict[str, float]:
    """The engine's retention as statement parameters."""
    return {
        "keep_completed": default_keep(retention.completed),
        "keep_failed": default_keep(retention.failed),
        "keep_canceled": default_keep(retention.canceled),
    }


Moment = TypeVar("Moment", int, datetime)  # microseconds (SQLite) or a timestamp (PostgreSQL)


@dataclass(slots=True)
class RateWindow(Generic[Moment]):
    """A rate-limited queue's window, as one claim sees it under the queue's claim lock.

    It keeps the newest ``limit`` starts, not only those still in the window: a window made
    longer later must still count the starts it now covers (at most ``limit`` are ever needed).
    """

    limit: int
    opened_after: Moment  # starts later than this count: the claim's time minus the window
    starts: list[Moment]

    @classmethod
    def read(cls, stored: Iterable[Moment], limit: int, opened_after: Moment) -> RateWindow[Moment]:
        return cls(limit, opened_after, sorted(stored)[-limit:])

    def room(self) -> int:
        """Starts the window allows now."""
        return max(0, self.limit - sum(1 for s in self.starts if s > self.opened_after))

    def add(self, moment: Moment, count: int) -> None:
        merged: list[Moment] = self.starts + [moment] * count
        self.starts = sorted(merged)[-self.limit:]

    def oldest_counted(self) -> Moment | None:
        """When full, the start whose leaving opens it again; None when it has room."""
        return self.starts[0] if self.room() == 0 else None


def queue_rate_params(change: QueueChange) -> dict[str, object]:
    """A queue's limit changes (rate, and per key) as statement parameters (NULLs keep the
    stored ones)."""
    starts, seconds = change.rate_limit or (None, None)
    key_starts, key_seconds = change.rate_limit_per_key or (None, None)
    return {"rate_limit": starts, "rate_period": seconds, "clear_rate": change.clear_rate_limit,
            "concurrency_per_key": change.concurrency_per_key, "clear_per_key": change.clear_concurrency_per_key,
            "rate_limit_per_key": key_starts, "rate_period_per_key": key_seconds,
            "clear_rate_per_key": change.clear_rate_limit_per_key}


def windows_to_clear(change: QueueChange) -> bool | Literal["none"] | None:
    """Which of a queue's windows a change makes useless: its own (False), its keys' (True),
    all (None), or none ("none")."""
    if change.clear_rate_limit and change.clear_rate_limit_per_key:
        return None
    if change.clear_rate_limit:
        return False
    if change.clear_rate_limit_per_key:
        return True
    return "none"


def queue_keep_params(change: QueueChange) -> dict[str, object]:
    """A queue's retention change as statement parameters (set_keep_*: write it or not)."""
    given = dict(change.retention or {})
    params: dict[str, object] = {}
    for state in ("completed", "failed", "canceled"):
        params[f"set_keep_{state}"] = state in given or change.clear_retention
        params[f"keep_{state}"] = None if change.clear_retention else keep_value(given, state)
    return params
