"""A blocking call on a daemon thread of its own, awaited from the event loop.

Not a ``ThreadPoolExecutor`` (nor anyio's worker threads): those threads are joined when the
interpreter exits, so one call that never returns would hold the process after shutdown,
past Docker's and Kubernetes' kill timeouts. The engine runs blocking job bodies this way,
and so does ``testing.run_job``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable
from typing import Any


def on_daemon_thread(call: Callable[[], Any], *, name: str,
                     context: contextvars.Context | None = None) -> asyncio.Future[Any]:
    """Start ``call()`` on a new daemon thread named ``name``, in ``context`` (default: a copy
    of the caller's); a future, on the running loop, for its result or error. A loop closed
    before the call ends is left alone: nobody waits for it any more."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    run_in = contextvars.copy_context() if context is None else context

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)

    def deliver(result: Any, error: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed
            loop.call_soon_threadsafe(settle, result, error)

    def main() -> None:
        try:
            result = run_in.run(call)
        except BaseException as exc:
            deliver(None, exc)
        else:
            deliver(result, None)

    threading.Thread(target=main, name=name, daemon=True).start()
    return future
