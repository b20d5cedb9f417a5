"""The event loop a command runs on: uvloop for workers where it is installed, else asyncio."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


def run(main: Callable[[], Coroutine[Any, Any, int]], *, prefer_uvloop: bool = False) -> int:
    """Run ``main()`` on a fresh loop and close it (what ``asyncio.run``/``uvloop.run`` do)."""
    factory = _uvloop_factory() if prefer_uvloop else None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # Windows, or not installed: the stdlib loop works the same
        return None
    return uvloop.new_event_loop
