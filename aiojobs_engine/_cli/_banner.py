"""The line a worker prints once it works: which engine, which queues, which jobs.

The first question after ``aiojobs work`` is "is it working the queue my job went to, and
does it know my job?": the line answers it on stderr, once the engine has registered and
begun claiming (its ``engine.started`` event), so it never claims more than is true.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

from .. import Engine, EventKind, JobEvent


def announce_when_started(engine: Engine, stream: TextIO | None = None) -> Callable[[], None]:
    """Print the start line when the engine starts; returns the function that stops listening."""

    def started(event: JobEvent) -> None:
        out = stream if stream is not None else sys.stderr
        print(start_line(engine, event.engine_id), file=out, flush=True)

    return engine.subscribe(started, kinds=[EventKind.ENGINE_STARTED])


def start_line(engine: Engine, engine_id: str | None) -> str:
    configured = engine.queues
    queues = "every queue" if configured is None else f"queue{'' if len(configured) == 1 else 's'} " + ", ".join(
        sorted(configured))
    names = sorted(definition.name for definition in engine.registry)
    jobs = f"{len(names)} job{'' if len(names) == 1 else 's'}: {', '.join(names)}" if names else "no jobs declared"
    return f"aiojobs: engine {engine_id or '?'} working {queues}; {jobs}"
