"""``aiojobs migrate|prune|clear``: the schema and the removal of jobs."""

from __future__ import annotations

import asyncio
import sys
from argparse import Namespace

from .. import Engine, JobState
from ._errors import EXIT_FAILED, EXIT_OK, UsageError
from ._output import emit, emit_json

# clear never touches jobs an engine holds: their outcome would be written to nothing.
CLEARABLE = tuple(s for s in JobState if s not in (JobState.CLAIMED, JobState.RUNNING))


async def migrate(engine: Engine, args: Namespace) -> int:
    # Works on the closed engine, so it also upgrades a schema that auto_migrate=False refuses.
    applied = await engine.migrate()
    if args.json:
        emit_json({"url": engine.url, "applied": applied})
    elif applied:
        emit(f"applied migration(s) {', '.join(map(str, applied))} to {engine.url}")
    else:
        emit(f"the database schema at {engine.url} is up to date")
    return EXIT_OK


async def prune(engine: Engine, args: Namespace) -> int:
    deleted = await engine.prune()
    if args.json:
        emit_json({"deleted": deleted})
    else:
        emit(f"pruned {_jobs(deleted)} past their retention")
    return EXIT_OK


def check_can_confirm(engine: Engine, args: Namespace) -> None:
    """Refuse before opening anything when no one can be asked and ``--yes`` is missing."""
    if not args.yes and not _stdin_is_terminal():
        raise UsageError("clear deletes jobs: pass --yes to confirm (stdin is not a terminal to ask on)")


async def clear(engine: Engine, args: Namespace) -> int:
    states = [JobState(s) for s in args.state] or list(CLEARABLE)
    queues: list[str] = list(args.queue)
    if not args.yes:
        counts = await engine.count_jobs()
        matching = sum(n for (queue, state), n in counts.items() if state in states and (not queues or queue in queues))
        where = f" in queue(s) {', '.join(queues)}" if queues else ""
        prompt = f"delete {_jobs(matching)} ({', '.join(states)}){where} from {engine.url}? [y/N] "
        if not await asyncio.to_thread(_confirm, prompt):
            print("aiojobs: nothing deleted", file=sys.stderr)
            return EXIT_FAILED
    deleted = await engine.clear(states=states, queues=queues)
    if args.json:
        emit_json({"deleted": deleted})
    else:
        emit(f"deleted {_jobs(deleted)}")
    return EXIT_OK


def _confirm(prompt: str) -> bool:
    sys.stderr.write(prompt)
    sys.stderr.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except ValueError:
        return False


def _jobs(n: int) -> str:
    return f"{n} job" if n == 1 else f"{n} jobs"
