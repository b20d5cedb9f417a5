"""Set-up helpers for the CLI tests (plain functions: the CLI runs its own event loop)."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

from aiojobs_engine import Engine, JobRecord

APP = "tests.apps.cli_app:engine"
APP_MODULE = "tests.apps.cli_app"

T = TypeVar("T")


@dataclass
class Result:
    code: int
    out: str
    err: str


def app_module() -> ModuleType:
    return importlib.import_module(APP_MODULE)


def with_engine(url: str, action: Callable[[Engine], Awaitable[T]]) -> T:
    """Run ``action`` against the test application's engine, opened on ``url``."""
    engine: Engine = app_module().engine
    engine.configure(url=url)

    async def go() -> T:
        async with engine:
            return await action(engine)

    return asyncio.run(go())


def enqueue(url: str, *jobs: tuple[str, tuple[Any, ...], dict[str, Any]]) -> list[JobRecord]:
    """Enqueue ``(name, args, options)`` triples; the records in order."""

    async def go(engine: Engine) -> list[JobRecord]:
        records = []
        for name, args, options in jobs:
            record = await engine.options(**options).enqueue(name, *args)
            assert record is not None
            records.append(record)
        return records

    return with_engine(url, go)


def get(url: str, job_id: int) -> JobRecord:
    async def go(engine: Engine) -> JobRecord:
        record = await engine.get_job(job_id)
        assert record is not None
        return record

    return with_engine(url, go)


@dataclass(frozen=True)
class Finished:
    """A database after one workoff: a completed job, a failed one, and one delayed an hour."""

    url: str
    completed: int
    failed: int
    delayed: int


def build_finished(url: str) -> Finished:
    async def go(engine: Engine) -> Finished:
        done = await engine.enqueue("add", 1, 2)
        failed = await engine.enqueue("boom")
        delayed = await engine.options(delay=3600).enqueue("add", 5, 6)
        assert done is not None and failed is not None and delayed is not None
        assert await engine.workoff() == 2
        return Finished(url, done.id, failed.id, delayed.id)

    return with_engine(url, go)
