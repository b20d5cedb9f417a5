"""Blocking job bodies on daemon threads, one per body.

Not a ``ThreadPoolExecutor``: its worker threads are joined when the interpreter exits, so
one body that never returns would hold the process after shutdown (past Docker's and
Kubernetes' kill timeouts). A daemon thread per body does not; how many run at once is
bounded by the executor's thread slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any


def run_in_daemon_thread(function: Callable[[], Any], *, name: str) -> asyncio.Future[Any]:
    """Start ``function`` on a new daemon thread; a future for its result on the current loop."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)

    def main() -> None:
        try:
            result = function()
        except BaseException as exc:
            _deliver(loop, settle, None, exc)
        else:
            _deliver(loop, settle, result, None)

    threading.Thread(target=main, name=name, daemon=True).start()
    return future


def _deliver(loop: asyncio.AbstractEventLoop, settle: Callable[[Any, BaseException | None], None],
             result: Any, error: BaseException | None) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits for this body any more
        loop.call_soon_threadsafe(settle, result, error)
