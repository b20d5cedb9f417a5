"""Turning stored rows into records, shared by the backends.

Rows are validated as they are read: JSON is decoded with ``json`` (never unpickled), states
must be known ones, and times come back as aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from .. import _json
from .._records import EngineRecord, JobErrorInfo, JobRecord, JobState, QueueRecord

TimeReader = Callable[[Any], datetime | None]


def job_from_row(row: Mapping[str, Any], read_time: TimeReader, read_json: Callable[[Any], Any]) -> JobRecord:
    inserted_at = read_time(row["inserted_at"])
    available_at = read_time(row["available_at"])
    assert inserted_at is not None and available_at is not None
    return JobRecord(
        id=row["id"],
        queue=row["queue"],
        name=row["name"],
        args=read_json(row["args"]),
        kwargs=read_json(row["kwargs"]),
        constructor_args=read_json(row["constructor_args"]),
        state=JobState(row["state"]),
        priority=row["priority"],
        attempt=row["attempt"],
        max_attempts=row["max_attempts"],
        timeout=row["timeout"],
        inserted_at=inserted_at,
        available_at=available_at,
        claimed_at=read_time(row["claimed_at"]),
        attempted_at=read_time(row["attempted_at"]),
        completed_at=read_time(row["completed_at"]),
        failed_at=read_time(row["failed_at"]),
        canceled_at=read_time(row["canceled_at"]),
        claimed_by=row["claimed_by"],
        result=read_json(row["result"]),
        errors=[_error_from(item) for item in read_json(row["errors"]) or []],
        unique_key=row["unique_key"],
        rescheduled_from=row["rescheduled_from"],
        meta=read_json(row["meta"]) or {},
        cancel_requested=bool(row["cancel_requested"]),
        retry=read_json(row["retry"]),
        claim_token=None if row["claim_token"] is None else str(row["claim_token"]),
    )


def _error_from(item: Mapping[str, Any]) -> JobErrorInfo:
    attempted_at = item.get("attempted_at")
    return JobErrorInfo(
        name=str(item.get("name", "")),
        message=str(item.get("message", "")),
        traceback=item.get("traceback"),
        attempt=int(item.get("attempt", 0) or 0),
        attempted_by=item.get("attempted_by"),
        attempted_at=parse_iso(attempted_at) if isinstance(attempted_at, str) else None,
    )


def parse_iso(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def queue_from_row(row: Mapping[str, Any], read_time: TimeReader) -> QueueRecord:
    return QueueRecord(
        name=row["name"],
        concurrency=row["concurrency"],
        priority=row["priority"],
        paused=bool(row["paused"]),
        global_concurrency=row["global_concurrency"],
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
