"""``aiojobs queues list|pause|resume|set|delete``: queue settings, stored for every engine to follow.

``pause``, ``resume`` and ``set`` store the queue they name, so they refuse a name nothing
knows unless ``--create`` is given (``_known``); ``delete`` removes the stored settings of
a queue that holds no job.
"""

from __future__ import annotations

from argparse import ArgumentTypeError, Namespace
from collections.abc import Callable
from typing import Any, TypeVar

from .. import Engine, JobState, QueueRecord
from .._errors import ConfigurationError
from .._options import (
    DEFAULT_CONCURRENCY,
    DEFAULT_PRIORITY,
    UNCHANGED,
    format_rate,
    parse_concurrency_per_key,
    parse_rate_limit,
)
from .._validation import check_name
from ._errors import EXIT_OK, CommandFailed, UsageError
from ._known import require_known, suggestion
from ._output import emit, emit_json, record_dict, table

T = TypeVar("T")


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
            [q.name, q.priority, q.concurrency, q.global_concurrency, q.concurrency_per_key, _rate(q.rate_limit),
             _rate(q.rate_limit_per_key), "paused" if q.paused else "active", *per_queue[q.name].values()]
            for q in ordered
        ]
        limits = ["PRIORITY", "CONCURRENCY", "GLOBAL", "PER-KEY", "RATE", "KEY-RATE"]
        emit(table(["QUEUE", *limits, "STATUS", *states], rows, right=[*limits, *states]))
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
    changes = {"rate_limit": args.rate, "concurrency_per_key": args.per_key, "rate_limit_per_key": args.rate_per_key}
    if args.concurrency is None and args.priority is None and all(v is UNCHANGED for v in changes.values()):
        raise UsageError("queues set needs --concurrency, --priority, --rate, --per-key and/or --rate-per-key")
    await _require_known(engine, args)
    record = await engine.set_queue(args.queue, concurrency=args.concurrency, priority=args.priority, **changes)
    what = f"concurrency {record.concurrency}, priority {record.priority}, rate {_rate(record.rate_limit, 'unlimited')}"
    # Per-key limits are told when the queue has one or this command removed one: most queues use no keys.
    if record.concurrency_per_key or record.rate_limit_per_key or args.per_key is None or args.rate_per_key is None:
        what += (f"; per key: concurrency {record.concurrency_per_key or 'unlimited'}, "
                 f"rate {_rate(record.rate_limit_per_key, 'unlimited')}")
    _report(args, record, f"set ({what})")
    return EXIT_OK


def _rate(limit: tuple[int, float] | None, unset: str | None = None) -> str | None:
    return unset if limit is None else format_rate(limit)


def _limit_type(parse: Callable[[str, str], T | None], what: str) -> Callable[[str], T | None]:
    """An argparse ``type`` for a limit that ``none`` removes (the option's default, UNCHANGED,
    stands for "left out"); a bad text is argparse's usage error, naming the option."""
    def convert(text: str) -> T | None:
        try:
            return parse(text, what)
        except ConfigurationError as exc:
            raise ArgumentTypeError(str(exc)) from None

    return convert


parse_rate = _limit_type(parse_rate_limit, "rate limit")
parse_rate_per_key = _limit_type(parse_rate_limit, "rate limit per key")
parse_per_key = _limit_type(parse_concurrency_per_key, "concurrency per key")


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
