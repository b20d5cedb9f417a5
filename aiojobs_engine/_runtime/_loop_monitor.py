"""The loop monitor: proves, to the heartbeat thread, that the event loop still turns.

A task on the engine's loop stamps the time every ``TICK`` seconds. The heartbeat thread
reads the stamp: a stale stamp means something (usually a job) blocks the loop. It logs
where the loop is stuck and, past ``blocked_loop_limit``, stops heartbeating so that a
wedged engine cannot hold its jobs for ever.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback

TICK = 0.1


class LoopMonitor:
    def __init__(self) -> None:
        self._last_tick = time.monotonic()
        self._loop_thread = threading.get_ident()

    async def run(self) -> None:
        self._loop_thread = threading.get_ident()
        while True:
            self._last_tick = time.monotonic()
            await asyncio.sleep(TICK)

    def blocked_for(self) -> float:
        """Seconds since the loop last turned, beyond the normal tick."""
        return max(0.0, time.monotonic() - self._last_tick - TICK)

    def where(self) -> str:
        """The innermost frames of the loop's thread: what is blocking it."""
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return "unknown"
        return "".join(traceback.format_stack(frame, limit=6)).rstrip()
