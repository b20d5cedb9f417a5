"""Shared fixtures: real databases, created and dropped by the tests themselves.

They are built from the project's own pytest plugin (``aiojobs_engine.pytest_plugin``, the
one users get): its throwaway SQLite file and PostgreSQL schema, its fast settings
(``aiojobs_settings``) and its ``EngineFactory``. What this suite adds is running on both
backends in one session: ``db_url`` is parametrised over a SQLite file in ``tmp_path`` and a
fresh schema of a PostgreSQL database that this session creates (and drops at the end).
PostgreSQL tests run whenever a server answers at ``$AIOJOBS_TEST_POSTGRES_URL`` (default:
the local server); with ``AIOJOBS_TEST_REQUIRE_POSTGRES=1`` (CI) an unreachable server is a
failure, not a skip.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from aiojobs_engine import Engine
from aiojobs_engine.pytest_plugin import EngineFactory, postgres_test_database, postgres_test_schema, sqlite_test_url
from aiojobs_engine.testing import FAST_SETTINGS
from tests._proxy import TcpProxy

POSTGRES_URL = os.environ.get("AIOJOBS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_POSTGRES = os.environ.get("AIOJOBS_TEST_REQUIRE_POSTGRES") == "1"

# The plugin's settings for tests (short intervals, so that recovery and polling happen
# within a test's patience), for the tests that build engines by hand.
FAST: dict[str, Any] = dict(FAST_SETTINGS)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str | None]:
    """A database for this test session, or None when no server answers (and it is optional)."""
    with ExitStack() as stack:
        try:
            # Not the plugin's default prefix: tests/testing/ checks that its runs leave none of those.
            url = stack.enter_context(postgres_test_database(POSTGRES_URL, prefix="aiojobs_test"))
        except Exception as exc:
            if REQUIRE_POSTGRES:
                pytest.fail(f"PostgreSQL is required (AIOJOBS_TEST_REQUIRE_POSTGRES=1) but {POSTGRES_URL} "
                            f"failed: {exc}")
            url = None
        yield url


@pytest.fixture
def postgres_url(postgres_database: str | None) -> Iterator[str]:
    """A fresh schema of the session's PostgreSQL database (dropped afterwards)."""
    if postgres_database is None:
        pytest.skip(f"no PostgreSQL server answers at {POSTGRES_URL} (set AIOJOBS_TEST_POSTGRES_URL)")
    with postgres_test_schema(postgres_database) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return sqlite_test_url(tmp_path)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on each backend in turn."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
async def make_engine(db_url: str, aiojobs_settings: dict[str, Any]) -> AsyncIterator[Callable[..., Engine]]:
    """``make_engine(**settings)``: a new engine on the test's database with the plugin's test
    settings (and ``settings`` over them), not opened; all are closed after the test."""
    factory = EngineFactory(db_url, aiojobs_settings)
    yield factory.configure
    await factory.close_all()


@pytest.fixture
async def postgres_proxy(postgres_url: str) -> AsyncIterator[TcpProxy]:
    """A TCP proxy in front of the test's PostgreSQL server, to cut at will (see tests/_proxy.py):
    ``postgres_proxy.url(postgres_url)`` is the test's database, reached through it."""
    parts = urlsplit(postgres_url)
    async with TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        yield proxy

