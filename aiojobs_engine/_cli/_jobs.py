"""``aiojobs jobs list|show|retry|cancel|snooze``: look at jobs and act on one."""

from __future__ import annotations

from argparse import Namespace

from .. import Engine, JobRecord, JobState
from ._errors import EXIT_OK, CommandFailed
from ._output import emit, emit_json, json_text, record_dict, short_time, table

_RETRYABLE = (JobState.FAILED, JobState.CANCELED, JobState.COMPLETED)


async def list_jobs(engine: Engine, args: Namespace) -> int:
    records = await engine.list_jobs(state=args.state or None, queue=args.queue or None, name=args.name or None,
                                     limit=args.limit)
    if args.json:
        emit_json([record_dict(r) for r in records])
    elif not records:
        emit("no jobs")
    else:
        rows = [
            [r.id, r.queue, r.name, r.state, f"{r.attempt}/{r.max_attempts}", r.priority, r.inserted_at,
             r.available_at]
            for r in records
        ]
        emit(table(["ID", "QUEUE", "NAME", "STATE", "ATTEMPT", "PRIORITY", "INSERTED", "AVAILABLE"], rows,
                   right=["ID", "ATTEMPT", "PRIORITY"]))
    return EXIT_OK


async def show_job(engine: Engine, args: Namespace) -> int:
    record = await _existing(engine, args.id)
    if args.json:
        emit_json(record_dict(record))
    else:
        emit(describe(record))
    return EXIT_OK


async def retry_job(engine: Engine, args: Namespace) -> int:
    before = await _existing(engine, args.id)
    if before.state not in _RETRYABLE:
        raise CommandFailed(
            f"job {before.id} is {before.state}; only failed, canceled or completed jobs can be retried"
        )
    record = await engine.retry_job(before.id)
    if record is None or record.state is not JobState.WAITING:
        now = "gone" if record is None else record.state
        raise CommandFailed(f"job {before.id} could not be retried: it is {now} now")
    _report(args, record, f"job {record.id} ({record.name}) is waiting to run again "
                          f"(attempt {record.attempt + 1} of {record.max_attempts})")
    return EXIT_OK


async def snooze_job(engine: Engine, args: Namespace) -> int:
    record = await engine.snooze(args.id, args.delay)  # JobStateError (exit 1) for a job in another state
    if record is None:
        raise CommandFailed(f"no job with id {args.id}")
    _report(args, record, f"job {record.id} ({record.name}) is snoozed until {short_time(record.available_at)}")
    return EXIT_OK


async def cancel_job(engine: Engine, args: Namespace) -> int:
    record = await engine.cancel(args.id)
    if record is None:
        raise CommandFailed(f"no job with id {args.id}")
    if record.state is JobState.CANCELED:
        message = f"job {record.id} ({record.name}) is canceled"
    elif record.cancel_requested:
        message = f"job {record.id} ({record.name}) is {record.state}: the engine running it will cancel it"
    else:
        raise CommandFailed(f"job {record.id} is already {record.state}; there is nothing to cancel")
    _report(args, record, message)
    return EXIT_OK


async def _existing(engine: Engine, job_id: int) -> JobRecord:
    record = await engine.get_job(job_id)
    if record is None:
        raise CommandFailed(f"no job with id {job_id}")
    return record


def _report(args: Namespace, record: JobRecord, message: str) -> None:
    if args.json:
        emit_json(record_dict(record))
    else:
        emit(message)


def describe(record: JobRecord) -> str:
    """Every public field of a job, one per line; the traceback of the latest error below."""
    fields: list[tuple[str, object]] = [
        ("id", record.id), ("queue", record.queue), ("name", record.name), ("state", record.state),
        ("priority", record.priority), ("attempt", f"{record.attempt} of {record.max_attempts}"),
        ("timeout", "-" if record.timeout is None else f"{record.timeout:g}s"),
        ("args", json_text(record.args)), ("kwargs", json_text(record.kwargs)),
        ("constructor_args", json_text(record.constructor_args)), ("meta", json_text(record.meta)),
        ("result", json_text(record.result)),
        ("inserted_at", short_time(record.inserted_at)), ("available_at", short_time(record.available_at)),
        ("claimed_at", short_time(record.claimed_at)), ("attempted_at", short_time(record.attempted_at)),
        ("completed_at", short_time(record.completed_at)), ("failed_at", short_time(record.failed_at)),
        ("canceled_at", short_time(record.canceled_at)), ("claimed_by", record.claimed_by or "-"),
        ("unique_key", record.unique_key or "-"), ("concurrency_key", record.concurrency_key or "-"),
        ("rescheduled_from", "-" if record.rescheduled_from is None else record.rescheduled_from),
        ("cancel_requested", "yes" if record.cancel_requested else "no"),
        ("retry", "-" if record.retry is None else json_text(record.retry)),
        ("errors", len(record.errors) or "-"),
    ]
    width = max(len(key) for key, _ in fields) + 1
    lines = [f"{key + ':':<{width}} {value}" for key, value in fields]
    for error in record.errors:
        by = error.get("attempted_by") or "?"
        lines.append(f"  attempt {error['attempt']} at {short_time(error.get('attempted_at'))} by {by}: "
                     f"{error['name']}: {error['message']}")
    latest = record.errors[-1].get("traceback") if record.errors else None
    if latest:
        lines.append("latest traceback:")
        lines.extend(f"  {line}" for line in latest.rstrip().splitlines())
    return "\n".join(lines)
