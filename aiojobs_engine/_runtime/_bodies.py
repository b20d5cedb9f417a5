"""How a job's body is called: inline on the engine's loop, on a daemon thread, or in a
worker process of the supervised pool.

Owns: calling the user's function or ``Job`` class, and the message a worker process gets.
It decides nothing (``_outcomes`` does) and writes nothing (the run does).

Blocking bodies run on a daemon thread each, not in a ``ThreadPoolExecutor`` (nor anyio's
worker threads): those threads are joined when the interpreter exits, so one body that never
returns would hold the process after shutdown, past Docker's and Kubernetes' kill timeouts.
How many run at once is bounded by the runner's thread slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable
from typing import Any

from .. import _json
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
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)

    def main() -> None:
        try:
            result = context.run(call_blocking, definition, record)
        except BaseException as exc:
            _deliver(loop, settle, None, exc)
        else:
            _deliver(loop, settle, result, None)

    threading.Thread(target=main, name=f"aiojobs-job-{record.id}", daemon=True).start()
    return future


def _deliver(loop: asyncio.AbstractEventLoop, settle: Callable[[Any, BaseException | None], None],
             result: Any, error: BaseException | None) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits for this body any more
        loop.call_soon_threadsafe(settle, result, error)


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
