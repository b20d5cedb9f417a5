"""``aiojobs queues list|pause|resume|set|delete``: queue settings, stored for every engine to follow.

``pause``, ``resume`` and ``set`` store the queue they name, so they refuse a name nothing
knows unless ``--create`` is given (``_known``); ``delete`` removes the stored settings of
a queue that holds no job.
"""

from __future__ import annotations

from argparse import ArgumentTypeError, Namespace
from typing import Any, Final

from .. import Engine, JobState, QueueRecord
from .._errors import ConfigurationError
from .._options import DEFAULT_CONCURRENCY, DEFAULT_PRIORITY, UNCHANGED, Unchanged, format_rate, parse_rate_limit
from .._validation import check_name
from ._errors import EXIT_OK, CommandFailed, UsageError
from ._known import require_known, suggestion
from ._output import emit, emit_json, record_dict, table


async def list_queues(engine: Engine, args: Namespace) -> int:
    queues = {q.name: q for q in await engine.list_queues()}
    counts = await engine.count_jobs()
    for name, _state in counts:
        # A queue with jobs but no stored settings works with the defaults.
        queues.setdefault(name, QueueRecord(name=name, concurrency=DEFAULT_CONCURRENCY, priority=DEFAULT_PRIORITY,
                                            paused=False))
    ordered = sorted(queues.values(), key=lambda q: (q.priority, q.name))
    per_queue = {q.name: {state: counts.get((q.name, state), 0) for state in JobState} for q in ordered}
    if args.json:
        emit_json([{**record_dict(q), "counts": {str(s): n for s, n in per_queue[q.name].items()}} for q in ordered])
    elif not ordered:
        emit("no queues")
    else:
        states = [str(s).upper() for s in JobState]
        rows: list[list[Any]] = [
            [q.name, q.priority, q.concurrency, q.global_concurrency,
             format_rate(q.rate_limit) if q.rate_limit else None, "paused" if q.paused else "active",
             *per_queue[q.name].values()]
            for q in ordered
        ]
        emit(table(["QUEUE", "PRIORITY", "CONCURRENCY", "GLOBAL", "RATE", "STATUS", *states], rows,
                   right=["PRIORITY", "CONCURRENCY", "GLOBAL", "RATE", *states]))
    return EXIT_OK


async def pause_queue(engine: Engine, args: Namespace) -> int:
    await _require_known(engine, args)
    _report(args, await engine.pause_queue(args.queue), "paused")
    return EXIT_OK


async def resume_queue(engine: Engine, args: Namespace) -> int:
    await _require_known(engine, args)
    _report(args, await engine.resume_queue(args.queue), "resumed")
    return EXIT_OK


async def set_queue(engine: Engine, args: Namespace) -> int:
    if args.concurrency is None and args.priority is None and args.rate is None:
        raise UsageError("queues set needs --concurrency, --priority and/or --rate")
    await _require_known(engine, args)
    rate: tuple[int, float] | Unchanged | None = (
        UNCHANGED if args.rate is None else None if args.rate == NO_RATE else args.rate)
    record = await engine.set_queue(args.queue, concurrency=args.concurrency, priority=args.priority,
                                    rate_limit=rate)
    _report(args, record, f"set (concurrency {record.concurrency}, priority {record.priority}, "
                          f"rate {format_rate(record.rate_limit) if record.rate_limit else 'unlimited'})")
    return EXIT_OK


NO_RATE: Final = "none"


def parse_rate(text: str) -> tuple[int, float] | str:
    """``--rate``: ``20/1s`` → (20, 1.0), ``none`` → NO_RATE (see ``parse_rate_limit``)."""
    try:
        rate = parse_rate_limit(text, "rate limit")
    except ConfigurationError as exc:
        raise ArgumentTypeError(str(exc)) from None
    return NO_RATE if rate is None else rate


async def delete_queue(engine: Engine, args: Namespace) -> int:
    name = check_name(args.queue, "queue")
    if not await engine.delete_queue(name):  # QueueNotEmptyError (exit 1) names the jobs still stored
        stored = {q.name for q in await engine.list_queues()}
        raise CommandFailed(f"no settings are stored for queue {name!r}; {suggestion(name, stored)}")
    if args.json:
        emit_json({"name": name, "deleted": True})
    else:
        emit(f"queue {name} deleted")
    return EXIT_OK


async def _require_known(engine: Engine, args: Namespace) -> None:
    await require_known(engine, [check_name(args.queue, "queue")], create=args.create)


def _report(args: Namespace, record: QueueRecord, what: str) -> None:
    if args.json:
        emit_json(record_dict(record))
    else:
        emit(f"queue {record.name} {what}")
