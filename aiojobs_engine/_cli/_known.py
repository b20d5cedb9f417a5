"""Queue names a command may act on without ``--create``: the guard against phantom queues.

Pausing, setting or working a queue stores it, so a typo (``queues set emial``) would
create a queue that no job will ever enter and that stays listed for good. A name is
known when a declared job, a declared queue (``Engine(queues=...)``, a worker group), a
stored schedule, a stored job or the stored queue settings name it; ``default`` always is.
Anything else is refused with the closest known names, unless ``--create`` says it is new
on purpose.
"""

from __future__ import annotations

import asyncio
import difflib
from collections.abc import Iterable

from .. import Engine
from .._options import DEFAULT_QUEUE
from ._errors import UsageError

_SUGGESTIONS = 3
_LISTED = 10  # known names shown when none is close


def declared_queues(engine: Engine) -> set[str]:
    """What the application's code names (no I/O): its jobs, its queues, its worker groups."""
    names = {DEFAULT_QUEUE}
    names.update(definition.options.queue or DEFAULT_QUEUE for definition in engine.registry)
    names.update(engine.queues or ())
    for group in engine.groups:
        names.update(group.queues or ())
    return names


async def known_queues(engine: Engine) -> set[str]:
    """Declared names and what the open engine's database names."""
    names = declared_queues(engine)
    names.update(queue.name for queue in await engine.list_queues())
    names.update(queue for queue, _ in await engine.count_jobs())
    for schedule in await engine.list_schedules():
        queue = schedule.options.get("queue")
        if isinstance(queue, str):
            names.add(queue)
        definition = engine.registry.get(schedule.job)
        if definition is not None and definition.options.queue:
            names.add(definition.options.queue)
    return names


async def require_known(engine: Engine, names: Iterable[str], *, create: bool) -> None:
    """Refuse a name nothing knows, unless ``create``; the engine must be open."""
    if create:
        return
    wanted = list(names)
    known = await known_queues(engine)
    for name in wanted:
        if name not in known:
            raise UsageError(unknown_queue_message(name, known))


def require_known_before_opening(engine: Engine, names: Iterable[str], *, create: bool) -> None:
    """``require_known`` from a command's precheck (no loop yet), before the engine is told to
    work the new names: opening it then would store them, the very thing being guarded."""
    if create:
        return
    wanted = list(names)

    async def check() -> None:
        async with engine:
            await require_known(engine, wanted, create=False)

    asyncio.run(check())


def unknown_queue_message(name: str, known: set[str]) -> str:
    return (f"no queue named {name!r} is known (no declared job, schedule, stored job or stored queue settings "
            f"name it); {suggestion(name, known)} Pass --create to create it")


def suggestion(name: str, names: set[str]) -> str:
    """``did you mean 'email'?``, or the names themselves (the first few) when none is close."""
    ordered = sorted(names)
    close = difflib.get_close_matches(name, ordered, n=_SUGGESTIONS)
    if close:
        return f"did you mean {' or '.join(map(repr, close))}?"
    if not ordered:
        return "none is known."
    shown = ", ".join(ordered[:_LISTED]) + (", ..." if len(ordered) > _LISTED else "")
    return f"known queues: {shown}."
