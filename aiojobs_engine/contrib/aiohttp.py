"""aiohttp: open the engine, and work jobs, for as long as an ``aiohttp.web`` app runs.

    from aiohttp import web
    from aiojobs_engine.contrib.aiohttp import ENGINE_KEY, setup

    app = web.Application()
    setup(app, engine)                 # run=False: enqueue only, workers run elsewhere
                                       # log_level="info": a line per job on stderr

    async def handler(request: web.Request) -> web.Response:
        engine = request.app[ENGINE_KEY]   # or import the module-level engine

``setup`` adds a cleanup context: it opens the engine at start-up, before any of the app's
``on_startup`` handlers run (so they can enqueue), and at clean-up stops it (no
more claims, running jobs finish within ``shutdown_grace``, the rest go back to waiting)
and closes it. Call it before the app starts.

``log_level`` (default ``"warning"``; ``None``: never): when the application has configured
no logging handler, the engine's records at that level and above go to stderr while the app
runs (``web.run_app`` sets up aiohttp's access log only when asked).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Final

from .. import ConfigurationError, Engine
from .._console import DEFAULT_LOG_LEVEL, LogLevel, check_log_level, console_logging
from .._extras import missing_extra

try:
    from aiohttp import web
except ImportError as exc:
    missing_extra(exc, module=__name__, extra="aiohttp", packages={"aiohttp"})

__all__ = ["ENGINE_KEY", "setup"]

ENGINE_KEY: Final = web.AppKey("aiojobs_engine", Engine)
"""Where ``setup`` puts the engine: ``request.app[ENGINE_KEY]``."""


def setup(app: web.Application, engine: Engine, *, run: bool = True,
          log_level: LogLevel = DEFAULT_LOG_LEVEL) -> None:
    """Open ``engine`` while ``app`` runs and, with ``run`` (default), work jobs in the background."""
    if not isinstance(engine, Engine):
        raise ConfigurationError(f"setup() takes an aiojobs_engine.Engine, got {engine!r}")
    if not isinstance(run, bool):
        raise ConfigurationError(f"run must be True or False, got {run!r}")
    check_log_level(log_level)
    app[ENGINE_KEY] = engine

    async def engine_context(app: web.Application) -> AsyncIterator[None]:
        context: AbstractAsyncContextManager[Engine] = engine.running(log_level=log_level) if run else engine
        with console_logging(log_level):
            async with context:
                yield

    app.cleanup_ctx.append(engine_context)
