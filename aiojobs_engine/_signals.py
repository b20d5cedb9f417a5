"""Scoped signal handling for ``run(handle_signals=True)`` and the CLI.

First SIGINT/SIGTERM: stop gracefully (running jobs get ``shutdown_grace``). Second: stop at
once (running jobs are handed back). The previous handlers are restored on exit, so an
application that embeds the engine keeps its own.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ._log import logger

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_on_signals(request_stop: Callable[..., None]) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    received = 0
    previous: dict[int, Any] = {}

    def on_signal(signum: int) -> None:
        nonlocal received
        received += 1
        immediate = received > 1
        logger.warning(
            "received %s: %s", signal.Signals(signum).name,
            "stopping at once, handing running jobs back" if immediate else
            "stopping gracefully (send it again to stop at once)",
            extra={"event": "engine.stopping", "signal": signum},
        )
        request_stop(immediate=immediate)

    for sig in SIGNALS:
        previous[sig] = signal.getsignal(sig)
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        yield
    finally:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
            if previous[sig] is not None:
                signal.signal(sig, previous[sig])
