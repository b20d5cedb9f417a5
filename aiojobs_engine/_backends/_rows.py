"""Turning stored rows into records, shared by the backends.

Rows are validated as they are read: JSON is decoded with ``json`` (never unpickled), states
must be known ones, and times come back as aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from .. import _json
from .._records import CronRecord, EngineRecord, JobErrorInfo, JobRecord, JobState, QueueRecord

TimeReader = Callable[[Any], datetime | None]

# A state by its stored value: cheaper than calling JobState(...) per claimed row
# (docs/decisions/2026-12-06-state-dict-lookup.md). An unknown value raises KeyError, which
# sends the row the careful way.
_STATES: dict[str, JobState] = {state.value: state for state in JobState}


def job_from_row(row: Mapping[str, Any], read_time: TimeReader, read_json: Callable[[Any], Any]) -> JobRecord:
    """A record from a row; never raises for bad data in a row.

    The common case (well-formed data, empty containers) is read the quick way; anything
    unusual goes through ``_careful_job_from_row``, which notes what it could not read.
    """
    try:
        args, kwargs = _decoded(row["args"], read_json), _decoded(row["kwargs"], read_json)
        constructor_args, meta = _decoded(row["constructor_args"], read_json), _decoded(row["meta"], read_json)
        errors_raw, retry = _decoded(row["errors"], read_json), _decoded(row["retry"], read_json)
        if not (type(args) is list and type(kwargs) is dict and type(constructor_args) is list
                and type(meta) is dict and type(errors_raw) is list and (retry is None or type(retry) is dict)):
            raise ValueError("unusual shape")
        token = row["claim_token"]
        return JobRecord(
            id=row["id"], queue=row["queue"], name=row["name"], args=args, kwargs=kwargs,
            constructor_args=constructor_args, state=_STATES[row["state"]], priority=row["priority"],
            attempt=row["attempt"], max_attempts=row["max_attempts"], timeout=row["timeout"],
            inserted_at=read_time(row["inserted_at"]), available_at=read_time(row["available_at"]),  # type: ignore[arg-type]
            claimed_at=read_time(row["claimed_at"]), attempted_at=read_time(row["attempted_at"]),
            completed_at=read_time(row["completed_at"]), failed_at=read_time(row["failed_at"]),
            canceled_at=read_time(row["canceled_at"]), claimed_by=row["claimed_by"],
            result=_decoded(row["result"], read_json),
            errors=[_error_from(e) for e in errors_raw] if errors_raw else [],
            unique_key=row["unique_key"], rescheduled_from=row["rescheduled_from"], meta=meta,
            concurrency_key=row["concurrency_key"], cancel_requested=bool(row["cancel_requested"]), retry=retry,
            claim_token=None if token is None else str(token),
        )
    except Exception:
        return _careful_job_from_row(row, read_time, read_json)


def _decoded(raw: Any, read_json: Callable[[Any], Any]) -> Any:
    """JSON text decoded; the values most rows hold skip the parser."""
    if raw == "[]":
        return []
    if raw == "{}":
        return {}
    if raw is None or raw == "null":
        return None
    return read_json(raw)


def _careful_job_from_row(row: Mapping[str, Any], read_time: TimeReader, read_json: Callable[[Any], Any]) -> JobRecord:
    """A record from any row, well-formed or not (see ``job_from_row``).

    A column that cannot be read (JSON of the wrong shape, a value from an older or foreign
    writer) gets an empty value and the record notes it in ``corrupt``: the engine then fails
    that one job with a readable error instead of stopping on it.
    """
    problems: list[str] = []

    def data(column: str, kind: type, empty: Any) -> Any:
        try:
            value = read_json(row[column])
        except Exception as exc:
            problems.append(f"{column}: {exc}")
            return empty
        if value is None and empty is None:
            return None
        if not isinstance(value, kind):
            problems.append(f"{column} is not a JSON {kind.__name__}")
            return empty
        return value

    def when(column: str) -> datetime | None:
        try:
            return read_time(row[column])
        except Exception as exc:
            problems.append(f"{column}: {exc}")
            return _FAR_FUTURE

    errors = [_error_from(item) for item in data("errors", list, [])]
    inserted_at = when("inserted_at") or _FAR_FUTURE
    available_at = when("available_at") or _FAR_FUTURE
    return JobRecord(
        id=row["id"],
        queue=row["queue"],
        name=row["name"],
        args=data("args", list, []),
        kwargs=data("kwargs", dict, {}),
        constructor_args=data("constructor_args", list, []),
        state=JobState(row["state"]),
        priority=row["priority"],
        attempt=row["attempt"],
        max_attempts=row["max_attempts"],
        timeout=row["timeout"],
        inserted_at=inserted_at,
        available_at=available_at,
        claimed_at=when("claimed_at"),
        attempted_at=when("attempted_at"),
        completed_at=when("completed_at"),
        failed_at=when("failed_at"),
        canceled_at=when("canceled_at"),
        claimed_by=row["claimed_by"],
        result=_result(row["result"], read_json, problems),
        errors=errors,
        unique_key=row["unique_key"],
        rescheduled_from=row["rescheduled_from"],
        meta=data("meta", dict, {}),
        concurrency_key=row["concurrency_key"],
        cancel_requested=bool(row["cancel_requested"]),
        retry=data("retry", dict, None),
        corrupt="; ".join(problems) or None,
        claim_token=None if row["claim_token"] is None else str(row["claim_token"]),
    )


_FAR_FUTURE = datetime.max.replace(tzinfo=UTC)


def _result(raw: Any, read_json: Callable[[Any], Any], problems: list[str]) -> Any:
    try:
        return read_json(raw)
    except Exception as exc:
        problems.append(f"result: {exc}")
        return None


def _error_from(item: Any) -> JobErrorInfo:
    if not isinstance(item, Mapping):
        return JobErrorInfo(name="", message=str(item), traceback=None, attempt=0, attempted_by=None,
                            attempted_at=None)
    attempted_at = item.get("attempted_at")
    attempt = item.get("attempt")
    return JobErrorInfo(
        name=str(item.get("name", "")),
        message=str(item.get("message", "")),
        traceback=item.get("traceback") if isinstance(item.get("traceback"), str) else None,
        attempt=attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else 0,
        attempted_by=item.get("attempted_by") if isinstance(item.get("attempted_by"), str) else None,
        attempted_at=parse_iso(attempted_at) if isinstance(attempted_at, str) else None,
    )


def parse_iso(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def queue_from_row(row: Mapping[str, Any], read_time: TimeReader) -> QueueRecord:
    retention: dict[str, float | None] = {}
    for state in ("completed", "failed", "canceled"):
        keep = row[f"keep_{state}"]
        if keep is not None:
            retention[state] = None if keep < 0 else float(keep)
    return QueueRecord(
        name=row["name"],
        concurrency=row["concurrency"],
        priority=row["priority"],
        paused=bool(row["paused"]),
        global_concurrency=row["global_concurrency"],
        updated_at=read_time(row["updated_at"]),
        retention=retention,
        rate_limit=None if row["rate_limit"] is None else (int(row["rate_limit"]), float(row["rate_period"])),
        concurrency_per_key=row["concurrency_per_key"],
        rate_limit_per_key=None if row["rate_limit_per_key"] is None
        else (int(row["rate_limit_per_key"]), float(row["rate_period_per_key"])),
    )


def cron_from_row(row: Mapping[str, Any], read_time: TimeReader, read_json: Callable[[Any], Any]) -> CronRecord:
    return CronRecord(
        name=row["name"],
        expression=row["expression"],
        timezone=row["timezone"],
        job=row["job"],
        args=read_json(row["args"]),
        kwargs=read_json(row["kwargs"]),
        options=read_json(row["options"]),
        paused=bool(row["paused"]),
        last_tick=read_time(row["last_tick"]),
        last_job_id=row["last_job_id"],
        created_at=read_time(row["created_at"]),
        updated_at=read_time(row["updated_at"]),
    )


def engine_from_row(row: Mapping[str, Any], read_time: TimeReader) -> EngineRecord:
    started_at = read_time(row["started_at"])
    heartbeat_at = read_time(row["heartbeat_at"])
    assert started_at is not None and heartbeat_at is not None
    queues = row["queues"]
    return EngineRecord(
        id=row["id"],
        host=row["host"],
        pid=row["pid"],
        started_at=started_at,
        heartbeat_at=heartbeat_at,
        queues=_json.loads(queues) if isinstance(queues, str) else queues,
        incarnation=row["incarnation"],
    )
