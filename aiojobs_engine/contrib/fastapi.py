"""FastAPI (and Starlette): open the engine, and work jobs, for as long as the app runs.

    from fastapi import FastAPI
    from aiojobs_engine.contrib.fastapi import engine_lifespan

    app = FastAPI(lifespan=engine_lifespan(engine))                      # enqueue and run jobs
    app = FastAPI(lifespan=engine_lifespan(engine, run=False))           # enqueue only (workers elsewhere)
    app = FastAPI(lifespan=engine_lifespan(engine, lifespan=my_lifespan))   # with the app's own

The engine opens before the app's own lifespan starts and closes after it ends, so the
app's start-up and shut-down code can enqueue. With ``run=True`` the engine works jobs in
the background (``engine.running()``); at shut-down it stops claiming, lets running jobs
finish within ``shutdown_grace`` and hands the rest back. Nothing here imports FastAPI.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

from .. import ConfigurationError, Engine

__all__ = ["engine_lifespan"]

AppT = TypeVar("AppT")

Lifespan = Callable[[AppT], AbstractAsyncContextManager[Any]]


def engine_lifespan(engine: Engine, *, run: bool = True,
                    lifespan: Lifespan[AppT] | None = None) -> Lifespan[AppT]:
    """A lifespan for ``FastAPI(lifespan=...)``: the engine opened (and, with ``run``, at
    work) around ``lifespan`` (the app's own, optional), whose state it passes on."""
    if not isinstance(engine, Engine):
        raise ConfigurationError(f"engine_lifespan() takes an aiojobs_engine.Engine, got {engine!r}")
    if not isinstance(run, bool):
        raise ConfigurationError(f"run must be True or False, got {run!r}")

    @asynccontextmanager
    async def engine_and_app(app: AppT) -> AsyncIterator[Any]:
        async with engine.running() if run else engine:
            if lifespan is None:
                yield None
            else:
                async with lifespan(app) as state:
                    yield state

    return engine_and_app
