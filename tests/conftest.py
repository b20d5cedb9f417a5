"""Shared fixtures: real databases, created and dropped by the tests themselves.

``db_url`` is parametrised over both backends: a SQLite file in ``tmp_path``, and a fresh
schema in a PostgreSQL database that this test session creates (and drops at the end).
PostgreSQL tests run whenever a server answers at ``$AIOJOBS_TEST_POSTGRES_URL`` (default:
the local server); with ``AIOJOBS_TEST_REQUIRE_POSTGRES=1`` (CI) an unreachable server is a
failure, not a skip.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from aiojobs_engine import Engine
from tests._proxy import TcpProxy

POSTGRES_URL = os.environ.get("AIOJOBS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_POSTGRES = os.environ.get("AIOJOBS_TEST_REQUIRE_POSTGRES") == "1"

# Short intervals so that recovery and polling happen within a test's patience.
FAST = {
    "poll_interval": 0.05,
    "heartbeat_interval": 0.1,
    "stale_after": 0.6,
    "reaper_interval": 0.1,
    "shutdown_grace": 3.0,
}


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def _admin(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str | None]:
    """A database for this test session, or None when no server answers (and it is optional)."""
    database = f"aiojobs_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{database}"'))
    except Exception as exc:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL is required (AIOJOBS_TEST_REQUIRE_POSTGRES=1) but {POSTGRES_URL} failed: {exc}")
        yield None
        return
    try:
        yield _with_database(POSTGRES_URL, database)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


def _postgres_url(postgres_database: str | None) -> Iterator[str]:
    if postgres_database is None:
        pytest.skip(f"no PostgreSQL server answers at {POSTGRES_URL} (set AIOJOBS_TEST_POSTGRES_URL)")
    schema = f"t_{secrets.token_hex(5)}"
    separator = "&" if "?" in postgres_database else "?"
    yield f"{postgres_database}{separator}schema={schema}"
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(postgres_database, timeout=5)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, postgres_database: str | None) -> Iterator[str]:
    """A fresh, empty database on each backend in turn."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
    else:
        yield from _postgres_url(postgres_database)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


@pytest.fixture
def postgres_url(postgres_database: str | None) -> Iterator[str]:
    yield from _postgres_url(postgres_database)


@pytest.fixture
async def postgres_proxy(postgres_url: str) -> AsyncIterator[TcpProxy]:
    """A TCP proxy in front of the test's PostgreSQL server, to cut at will (see tests/_proxy.py):
    ``postgres_proxy.url(postgres_url)`` is the test's database, reached through it."""
    parts = urlsplit(postgres_url)
    async with TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        yield proxy


@pytest.fixture
async def make_engine(db_url: str) -> AsyncIterator[Callable[..., Engine]]:
    """Build engines on the test's database with fast settings; all are closed afterwards."""
    engines: list[Engine] = []

    def make(**settings: Any) -> Engine:
        engine = Engine(db_url, **{**FAST, **settings})
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.close()
