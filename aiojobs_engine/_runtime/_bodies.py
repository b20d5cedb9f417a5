"""How a job's body is called: inline on the engine's loop, on a daemon thread, or in a
worker process of the supervised pool.

Owns: calling the user's function or ``Job`` class, and the message a worker process gets.
It decides nothing (``_outcomes`` does) and writes nothing (the run does).

Blocking bodies run on a daemon thread each (``_daemon``: one that never returns cannot hold
the process at exit); how many run at once is bounded by the runner's thread slots.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from .. import _json
from .._daemon import on_daemon_thread
from .._definitions import JobDefinition
from .._records import JobRecord
from ._pool_worker import record_to_json


class JobExitError(Exception):
    """An async job called ``sys.exit()``; raised instead, so the engine's loop carries on."""


async def call_inline(definition: JobDefinition, record: JobRecord) -> Any:
    """Run an async body in the calling task."""
    try:
        if definition.is_class:
            instance = definition.target(*record.constructor_args)
            return await instance.run(*record.args, **record.kwargs)
        return await definition.target(*record.args, **record.kwargs)
    except SystemExit as exc:  # asyncio would re-raise it out of the event loop
        raise JobExitError(f"the job called sys.exit({exc.code!r})") from None


def call_blocking(definition: JobDefinition, record: JobRecord) -> Any:
    if definition.is_class:
        return definition.target(*record.constructor_args).run(*record.args, **record.kwargs)
    return definition.target(*record.args, **record.kwargs)


def start_thread(definition: JobDefinition, record: JobRecord) -> asyncio.Future[Any]:
    """Start a blocking body on a new daemon thread, in a copy of the caller's context; a
    future (on the current loop) for its result."""
    return on_daemon_thread(functools.partial(call_blocking, definition, record), name=f"aiojobs-job-{record.id}")


def process_task(definition: JobDefinition, record: JobRecord, engine_id: str) -> dict[str, Any]:
    """What a worker process needs to run the body: names and JSON, never a pickle."""
    module, qualname = definition.import_path
    return {
        "job_id": record.id,
        "module": module,
        "qualname": qualname,
        "is_class": definition.is_class,
        "args": _json.dumps(record.args, "args"),
        "kwargs": _json.dumps(record.kwargs, "kwargs"),
        "constructor_args": _json.dumps(record.constructor_args, "constructor_args"),
        "record": record_to_json(record),
        "engine_id": engine_id,
    }
