"""pytest fixtures that run an application's jobs against a throwaway database.

pytest loads this plugin by itself once aiojobs_engine is installed (entry point
``pytest11: aiojobs_engine``). Tell it where the application's engine is, in the pytest
configuration::

    [tool.pytest.ini_options]
    aiojobs_engine_app = "myapp.jobs:engine"

or by overriding the ``aiojobs_engine_app`` fixture in a ``conftest.py``. Then a test asks
for ``aiojobs_test_engine``: the application's engine, configured on a fresh SQLite file in
``tmp_path`` (or a fresh schema of a PostgreSQL database created for the session, with
``--aiojobs-postgres URL`` or ``$AIOJOBS_PYTEST_POSTGRES``), with short intervals, opened;
afterwards it is closed and its configuration put back. Asking for ``aiojobs_clock`` too
runs the engine on that ``FrozenClock``.

Fixtures: ``aiojobs_engine_app``, ``aiojobs_database_url``, ``aiojobs_settings``,
``aiojobs_clock``, ``aiojobs_engine_factory``, ``aiojobs_test_engine``. The helpers to use in
tests are in ``aiojobs_engine.testing``. Async fixtures are pytest-asyncio fixtures when
pytest-asyncio is installed (any mode), else plain pytest fixtures (for anyio's plugin). In
pytest-asyncio's strict mode, an async test that uses one of these fixtures and has no
``asyncio`` (or ``anyio``) marker gets ``asyncio``: such a test can only mean to run on a
loop, and left unmarked pytest would not run it at all.

For suites that choose their databases themselves (several backends in one run, say), the
pieces under the fixtures are public too: ``sqlite_test_url(folder)``,
``postgres_test_database(server_url)`` and ``postgres_test_schema(database_url)`` (context
managers that create and drop), and ``EngineFactory(url, settings)``.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import re
import secrets
from collections.abc import AsyncIterator, Generator, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

import pytest

from . import Clock, Engine, EngineSettings, FrozenClock
from .testing import FAST_SETTINGS

if TYPE_CHECKING:
    async_fixture = pytest.fixture
else:
    try:
        from pytest_asyncio import fixture as async_fixture
    except ImportError:  # anyio's pytest plugin runs plain async fixtures
        async_fixture = pytest.fixture

__all__ = ["EngineFactory", "postgres_test_database", "postgres_test_schema", "sqlite_test_url"]

POSTGRES_ENV: Final = "AIOJOBS_PYTEST_POSTGRES"
APP_INI: Final = "aiojobs_engine_app"

_FIXTURES: Final = frozenset({"aiojobs_engine_app", "aiojobs_postgres_database", "aiojobs_database_url",
                              "aiojobs_settings", "aiojobs_clock", "aiojobs_engine_factory", "aiojobs_test_engine"})


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aiojobs_engine", "aiojobs_engine test databases")
    group.addoption(
        "--aiojobs-postgres", metavar="URL", default=None,
        help="run aiojobs_engine fixtures on PostgreSQL: a database created on this server for the session "
             f"(a fresh schema per test) and dropped at the end. Default: ${POSTGRES_ENV}, else SQLite in tmp_path.",
    )
    parser.addini(APP_INI, "module:attribute of the application's aiojobs_engine.Engine (for aiojobs_test_engine)",
                  default="")


# trylast: the innermost of the wrappers of this hook, so the marker is there when
# pytest-asyncio's own wrapper (outside it) decides which items it runs.
@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_pycollect_makeitem(collector: pytest.Module | pytest.Class, name: str,
                              obj: object) -> Generator[None, Any, None]:
    outcome = yield
    if not _strict_asyncio(collector.config):
        return
    made = outcome.get_result()
    for item in made if isinstance(made, list) else [made]:
        if (isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj)
                and item.get_closest_marker("asyncio") is None and item.get_closest_marker("anyio") is None
                and any(fixture in _FIXTURES for fixture in item.fixturenames)):
            item.add_marker(pytest.mark.asyncio)


def _strict_asyncio(config: pytest.Config) -> bool:
    """pytest-asyncio is active and in strict mode (in auto mode it marks every async test)."""
    if not config.pluginmanager.hasplugin("asyncio"):
        return False
    try:
        return str(config.getini("asyncio_mode") or "strict") == "strict"
    except ValueError:  # pragma: no cover - an asyncio plugin that is not pytest-asyncio
        return False


def pytest_report_header(config: pytest.Config) -> str | None:
    url = _postgres_server(config)
    if url is None:
        return None
    return f"aiojobs_engine: test databases on PostgreSQL at {_redacted(url)}"


# -- where the application's engine is -------------------------------------------------------


@pytest.fixture
def aiojobs_engine_app(request: pytest.FixtureRequest) -> Engine:
    """The application's engine: from the ``aiojobs_engine_app`` ini option (``module:attribute``).

    Override this fixture in a ``conftest.py`` to return the engine directly.
    """
    spec = str(request.config.getini(APP_INI) or "").strip()
    if not spec:
        raise pytest.UsageError(
            f"aiojobs_test_engine needs the application's engine: set `{APP_INI} = \"myapp.jobs:engine\"` in the "
            "pytest configuration, or override the `aiojobs_engine_app` fixture in conftest.py to return it"
        )
    return load_engine(spec)


def load_engine(spec: str) -> Engine:
    """Import ``module:attribute`` (dotted attributes allowed) and check it is an ``Engine``."""
    module_name, _, attribute = (part.strip() for part in spec.partition(":"))
    if not module_name or not attribute:
        raise pytest.UsageError(f"{APP_INI} must look like module:attribute (myapp.jobs:engine), got {spec!r}")
    try:
        target: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise pytest.UsageError(
            f"{APP_INI} = {spec}: cannot import {module_name!r} ({exc}); is the project on sys.path "
            "(pytest's `pythonpath = .` option)?"
        ) from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise pytest.UsageError(f"{APP_INI} = {spec}: {module_name} has no attribute {attribute!r}") from None
    if not isinstance(target, Engine):
        raise pytest.UsageError(f"{APP_INI} = {spec} is a {type(target).__name__}, not an aiojobs_engine.Engine")
    return target


# -- the throwaway database -------------------------------------------------------------------


def _postgres_server(config: pytest.Config) -> str | None:
    url = config.getoption("--aiojobs-postgres", default=None) or os.environ.get(POSTGRES_ENV) or None
    return str(url) if url else None


_PREFIX: Final = re.compile(r"[a-z][a-z0-9_]{0,39}")


def sqlite_test_url(folder: Path | str) -> str:
    """The URL of a SQLite file in ``folder`` (``aiojobs.sqlite3``), created when an engine opens it."""
    if not isinstance(folder, Path | str):
        raise TypeError(f"sqlite_test_url takes a folder (a pathlib.Path or a str, say tmp_path), got {folder!r}")
    return f"sqlite:///{Path(folder).resolve() / 'aiojobs.sqlite3'}"


@contextmanager
def postgres_test_database(server_url: str, *, prefix: str = "aiojobs_pytest") -> Iterator[str]:
    """A new, empty database on the PostgreSQL server at ``server_url`` (its role needs
    ``CREATEDB``), named ``<prefix>_<pid>_<random>``: yields its URL, and drops it on exit
    (``WITH (FORCE)``: connections left open do not keep it). An unreachable server raises
    here, before anything is yielded: the caller chooses to skip or to fail. It blocks (it
    runs its own event loop): use it from a plain (session) fixture."""
    if not _PREFIX.fullmatch(str(prefix)):
        raise ValueError(f"prefix must be 1-40 lower-case letters, digits or '_', starting with a letter, got "
                         f"{prefix!r} (it begins the name of the database created)")
    database = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{database}"'))
    try:
        yield _with_database(server_url, database)
    finally:
        asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


@contextmanager
def postgres_test_schema(database_url: str) -> Iterator[str]:
    """``database_url`` with a fresh schema (``?schema=t_<random>``): an engine opened on it
    keeps every table there, so each test gets an empty database in milliseconds. The schema
    is created by the engine when it opens, and dropped (with what it holds) on exit, which
    blocks: use it from a plain fixture."""
    schema = f"t_{secrets.token_hex(6)}"
    separator = "&" if "?" in database_url else "?"
    try:
        yield f"{database_url}{separator}schema={schema}"
    finally:
        asyncio.run(_admin(database_url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@pytest.fixture(scope="session")
def aiojobs_postgres_database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """A PostgreSQL database created for this session (dropped at its end), or None on SQLite."""
    server = _postgres_server(request.config)
    if server is None:
        yield None
        return
    with ExitStack() as stack:
        try:
            url = stack.enter_context(postgres_test_database(server))
        except Exception as exc:
            pytest.fail(f"--aiojobs-postgres: could not create a test database on {_redacted(server)}: {exc}",
                        pytrace=False)
        yield url


@pytest.fixture
def aiojobs_database_url(aiojobs_postgres_database: str | None, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database for one test: a SQLite file in ``tmp_path``, or on PostgreSQL a
    fresh schema of the session's database (dropped afterwards)."""
    if aiojobs_postgres_database is None:
        yield sqlite_test_url(tmp_path)
        return
    with postgres_test_schema(aiojobs_postgres_database) as url:
        yield url


async def _admin(url: str, statement: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    connection = await asyncpg.connect(url, timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def _with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


# -- engines on it ----------------------------------------------------------------------------


@pytest.fixture
def aiojobs_settings() -> dict[str, Any]:
    """Engine settings for the test's engines (``testing.FAST_SETTINGS``); override to change them."""
    return dict(FAST_SETTINGS)


@pytest.fixture
def aiojobs_clock() -> FrozenClock:
    """A ``FrozenClock`` at the current time. Asking for it makes the test's engines use it."""
    return FrozenClock()


@dataclass(frozen=True, slots=True)
class _Saved:
    """An engine's configuration before a test changed it."""

    url: str | None
    settings: EngineSettings
    clock: Clock


class EngineFactory:
    """``await aiojobs_engine_factory(engine=None, *, clock=None, **settings)``: the engine
    (a new ``Engine()`` if none is given) configured on the test's database with the test
    settings (and ``settings`` over them), on ``clock`` or the test's ``aiojobs_clock``,
    opened. ``aiojobs_engine_factory.configure(...)`` does the same without opening it, for a
    test that opens or runs the engine itself. Each engine is closed, and its configuration
    put back, after the test.

    A suite that picks its databases itself builds one: ``EngineFactory(url, settings,
    clock=None)``, then ``await factory.close_all()`` at the end of each test."""

    def __init__(self, url: str, settings: Mapping[str, Any], clock: Clock | None = None) -> None:
        self._url = url
        self._settings = dict(settings)
        self._clock = clock
        self._made: list[tuple[Engine, _Saved]] = []

    def configure(self, engine: Engine | None = None, /, *, clock: Clock | None = None, **settings: Any) -> Engine:
        """The engine (a new ``Engine()`` if none is given) configured on the test's database,
        closed: it is the test's to open (``async with engine``) or run (``engine.running()``)."""
        engine = Engine() if engine is None else engine
        if not isinstance(engine, Engine):
            raise TypeError(f"aiojobs_engine_factory takes an aiojobs_engine.Engine, got {engine!r}")
        if engine.is_open:
            raise pytest.UsageError(
                "the engine is already open; the aiojobs fixtures configure it on a throwaway database before "
                "opening it (do not open it at import time or in a session fixture)"
            )
        saved = _Saved(url=_configured_url(engine), settings=engine.settings, clock=engine.clock)
        chosen_clock = clock or self._clock
        if chosen_clock is None:
            engine.configure(url=self._url, **{**self._settings, **settings})
        else:
            engine.configure(url=self._url, clock=chosen_clock, **{**self._settings, **settings})
        self._made.append((engine, saved))
        return engine

    async def __call__(self, engine: Engine | None = None, /, *, clock: Clock | None = None,
                       **settings: Any) -> Engine:
        engine = self.configure(engine, clock=clock, **settings)
        try:
            await engine.open()
        except BaseException:
            _, saved = self._made.pop()
            _restore(engine, saved)
            raise
        return engine

    async def close_all(self) -> None:
        while self._made:
            engine, saved = self._made.pop()
            for _ in range(1000):  # every open the test left, not only ours
                if not engine.is_open:
                    break
                await engine.close()
            _restore(engine, saved)


def _configured_url(engine: Engine) -> str | None:
    # The URL given to configure(), which has no public reader nor a way to unset it.
    url = getattr(engine, "_configured_url", None)
    return url if isinstance(url, str) else None


def _restore(engine: Engine, saved: _Saved) -> None:
    settings = {f.name: getattr(saved.settings, f.name) for f in fields(saved.settings)}
    engine.configure(clock=saved.clock, **settings)
    if hasattr(engine, "_configured_url"):
        engine._configured_url = saved.url  # see _configured_url


@async_fixture
async def aiojobs_engine_factory(request: pytest.FixtureRequest, aiojobs_database_url: str,
                                 aiojobs_settings: dict[str, Any]) -> AsyncIterator[EngineFactory]:
    """Engines on the test's database (see ``EngineFactory``): ``await aiojobs_engine_factory(engine)``."""
    clock = request.getfixturevalue("aiojobs_clock") if "aiojobs_clock" in request.fixturenames else None
    factory = EngineFactory(aiojobs_database_url, aiojobs_settings, clock)
    try:
        yield factory
    finally:
        await factory.close_all()


@async_fixture
async def aiojobs_test_engine(aiojobs_engine_factory: EngineFactory, aiojobs_engine_app: Engine) -> Engine:
    """The application's engine on the test's throwaway database, open (closed after the test)."""
    return await aiojobs_engine_factory(aiojobs_engine_app)
