"""``aiojobs cron list|pause|resume|remove``: recurring schedules and their next runs."""

from __future__ import annotations

from argparse import Namespace
from typing import Any

from .. import CronRecord, Engine
from ._errors import EXIT_OK, CommandFailed
from ._output import emit, emit_json, record_dict, short_time, table


async def list_schedules(engine: Engine, args: Namespace) -> int:
    schedules = await engine.list_schedules()
    if args.json:
        emit_json([record_dict(s) for s in schedules])
    elif not schedules:
        emit("no schedules")
    else:
        rows: list[list[Any]] = [
            [s.name, s.expression, s.timezone, s.job, "paused" if s.paused else "active", s.last_tick, s.next_tick]
            for s in schedules
        ]
        emit(table(["SCHEDULE", "EXPRESSION", "TIMEZONE", "JOB", "STATUS", "LAST TICK", "NEXT TICK"], rows))
    return EXIT_OK


async def pause_schedule(engine: Engine, args: Namespace) -> int:
    _report(args, await engine.pause_schedule(args.name), args.name, "paused")
    return EXIT_OK


async def resume_schedule(engine: Engine, args: Namespace) -> int:
    _report(args, await engine.resume_schedule(args.name), args.name, "resumed")
    return EXIT_OK


async def remove_schedule(engine: Engine, args: Namespace) -> int:
    if not await engine.remove_schedule(args.name):
        raise CommandFailed(f"no schedule named {args.name!r}")
    if args.json:
        emit_json({"name": args.name, "removed": True})
    else:
        emit(f"schedule {args.name} removed")
    return EXIT_OK


def _report(args: Namespace, record: CronRecord | None, name: str, what: str) -> None:
    if record is None:
        raise CommandFailed(f"no schedule named {name!r}")
    if args.json:
        emit_json(record_dict(record))
    else:
        after = f"; next tick {short_time(record.next_tick)}" if record.next_tick else ""
        emit(f"schedule {record.name} {what}{after}")
