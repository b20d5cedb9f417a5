"""FastAPI (and Starlette): open the engine, and work jobs, for as long as the app runs.

    from fastapi import FastAPI
    from aiojobs_engine.contrib.fastapi import engine_lifespan

    app = FastAPI(lifespan=engine_lifespan(engine))                      # enqueue and run jobs
    app = FastAPI(lifespan=engine_lifespan(engine, run=False))           # enqueue only (workers elsewhere)
    app = FastAPI(lifespan=engine_lifespan(engine, lifespan=my_lifespan))   # with the app's own
    app = FastAPI(lifespan=engine_lifespan(engine, log_level="info"))    # a line per job on stderr

The engine opens before the app's own lifespan starts and closes after it ends, so the
app's start-up and shut-down code can enqueue. With ``run=True`` the engine works jobs in
the background (``engine.running()``); at shut-down it stops claiming, lets running jobs
finish within ``shutdown_grace`` and hands the rest back. Nothing here imports FastAPI.

``log_level`` (default ``"warning"``; ``None``: never): when the application has configured
no logging handler — uvicorn configures its own loggers, not the root one — the engine's
records at that level and above go to stderr while the app runs, so a failed job is seen.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

from .. import ConfigurationError, Engine
from .._console import DEFAULT_LOG_LEVEL, LogLevel, check_log_level, console_logging

__all__ = ["engine_lifespan"]

AppT = TypeVar("AppT")

Lifespan = Callable[[AppT], AbstractAsyncContextManager[Any]]


def engine_lifespan(engine: Engine, *, run: bool = True, lifespan: Lifespan[AppT] | None = None,
                    log_level: LogLevel = DEFAULT_LOG_LEVEL) -> Lifespan[AppT]:
    """A lifespan for ``FastAPI(lifespan=...)``: the engine opened (and, with ``run``, at
    work) around ``lifespan`` (the app's own, optional), whose state it passes on."""
    if not isinstance(engine, Engine):
        raise ConfigurationError(f"engine_lifespan() takes an aiojobs_engine.Engine, got {engine!r}")
    if not isinstance(run, bool):
        raise ConfigurationError(f"run must be True or False, got {run!r}")
    check_log_level(log_level)

    @asynccontextmanager
    async def engine_and_app(app: AppT) -> AsyncIterator[Any]:
        # Around the open too, so that what opening logs (migrations) is seen as well.
        with console_logging(log_level):
            async with engine.running(log_level=log_level) if run else engine:
                if lifespan is None:
                    yield None
                else:
                    async with lifespan(app) as state:
                        yield state

    return engine_and_app

