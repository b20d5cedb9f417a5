"""The pytest plugin, used as a user would: a small project with its own test suite, run by pytester.

The user suites below use only what docs/testing.md documents: the fixtures, the
``aiojobs_engine_app`` ini option (or a conftest override) and ``aiojobs_engine.testing``.
"""

from __future__ import annotations

import asyncio
import os
from importlib.metadata import entry_points
from pathlib import Path
from textwrap import dedent

import pytest

from aiojobs_engine import Engine, FrozenClock
from aiojobs_engine.pytest_plugin import EngineFactory, postgres_test_database, postgres_test_schema, sqlite_test_url
from aiojobs_engine.testing import FAST_SETTINGS
from tests.conftest import POSTGRES_URL

pytest_plugins = ["pytester"]

APP = '''
from aiojobs_engine import Engine, current_job

engine = Engine("sqlite:///never-used-by-tests.sqlite3")   # the application's own database


@engine.job(queue="email", max_attempts=3)
async def send_welcome(user_id: int) -> dict:
    return {"sent_to": user_id}


@engine.job(max_attempts=5)
async def charge(order: int) -> str:
    if current_job().attempt < 3:
        raise RuntimeError("the payment gateway is down")
    return "charged"


@engine.job(schedule="0 * * * *")
async def hourly_report() -> str:
    return "report"


async def signup(user_id: int) -> None:      # the code under test
    await send_welcome.enqueue(user_id)
'''

WEB = '''
from fastapi import FastAPI

from aiojobs_engine.contrib.fastapi import engine_lifespan
from myapp.jobs import engine, send_welcome

app = FastAPI(lifespan=engine_lifespan(engine))


@app.post("/signup/{user_id}", status_code=202)
async def signup(user_id: int) -> dict:
    record = await send_welcome.enqueue(user_id)
    return {"job_id": record.id}
'''

USER_SUITE = '''
from datetime import timedelta
from pathlib import Path

from aiojobs_engine import JobState
from aiojobs_engine.testing import advance, assert_enqueued, drain, inline, refute_enqueued, tick

from myapp.jobs import charge, engine, hourly_report, send_welcome, signup


async def test_signup_enqueues_a_welcome(aiojobs_test_engine):
    await signup(42)
    await assert_enqueued(send_welcome, args=[42], queue="email", count=1)
    assert await drain(aiojobs_test_engine) == 1
    await refute_enqueued(send_welcome)


async def test_it_is_the_apps_engine_on_a_throwaway_database(aiojobs_test_engine, tmp_path):
    assert aiojobs_test_engine is engine and engine.is_open
    assert str(tmp_path) in engine.url
    assert engine.settings.poll_interval == 0.05
    await refute_enqueued(engine=engine)        # each test starts empty


async def test_retries_play_out_on_a_frozen_clock(aiojobs_test_engine, aiojobs_clock):
    assert engine.clock is aiojobs_clock
    record = await charge.enqueue(7)
    assert await drain(aiojobs_test_engine, include_delayed=True) == 3
    done = await aiojobs_test_engine.get_job(record.id)
    assert done.state == JobState.COMPLETED and done.result == "charged" and len(done.errors) == 2


async def test_delays_and_cron_ticks(aiojobs_test_engine, aiojobs_clock):
    later = await send_welcome.options(delay=timedelta(minutes=10)).enqueue(1)
    assert await advance(aiojobs_test_engine, 599) == 0
    assert await advance(aiojobs_test_engine, 1) == 1
    enqueued = await tick(aiojobs_test_engine)
    assert [job.name for job in enqueued] == ["hourly_report"]
    await assert_enqueued(hourly_report, state=JobState.COMPLETED, count=1)
    assert (await aiojobs_test_engine.get_job(later.id)).state == JobState.COMPLETED


async def test_inline_mode(aiojobs_test_engine):
    with inline(aiojobs_test_engine):
        record = await send_welcome.enqueue(5)
    assert record.state == JobState.COMPLETED and record.result == {"sent_to": 5}


async def test_a_web_handler_through_httpx(aiojobs_test_engine):
    import httpx
    from myapp.web import app

    transport = httpx.ASGITransport(app=app)    # no lifespan: the fixture opened the engine
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/signup/9")
    assert response.status_code == 202
    (record,) = await assert_enqueued(send_welcome, args=[9])
    assert record.id == response.json()["job_id"]


async def test_a_failing_assertion_reads_well(aiojobs_test_engine):
    await signup(1)
    await assert_enqueued(send_welcome, args=[2])


async def test_the_engine_is_put_back_afterwards():
    assert not engine.is_open
    assert engine.settings.poll_interval == 1.0 and type(engine.clock).__name__ == "SystemClock"
    async with engine:                          # on its own database again
        assert engine.url == "sqlite:///never-used-by-tests.sqlite3"
    assert Path("never-used-by-tests.sqlite3").exists()
'''

INI = '''
[pytest]
aiojobs_engine_app = myapp.jobs:engine
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
pythonpath = .
filterwarnings = error
'''


def make_project(pytester: pytest.Pytester, ini: str = INI) -> None:
    pytester.makefile(".ini", pytest=dedent(ini))
    pytester.mkpydir("myapp")
    pytester.makepyfile(**{"myapp/jobs": APP, "myapp/web": WEB})


def test_the_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("aiojobs_engine") == "aiojobs_engine.pytest_plugin"


def test_a_user_suite_runs_against_its_own_throwaway_databases(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    pytester.makepyfile(test_user=USER_SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=7, failed=1)
    result.stdout.fnmatch_lines([
        "*AssertionError: expected at least one send_welcome job with args [[]2[]] in state "
        "waiting/snoozed; found none",
        "*send_welcome jobs in state waiting/snoozed (1):",
        "*send_welcome args=[[]1[]] *queue='email' state=waiting*",
    ])


def test_strict_mode_a_conftest_engine_and_extra_engines(pytester: pytest.Pytester) -> None:
    make_project(pytester, ini='''
        [pytest]
        asyncio_mode = strict
        asyncio_default_fixture_loop_scope = function
        pythonpath = .
        filterwarnings = error
    ''')
    pytester.makeconftest('''
        import pytest
        from myapp.jobs import engine

        @pytest.fixture
        def aiojobs_engine_app():
            return engine

        @pytest.fixture
        def aiojobs_settings():
            return {"poll_interval": 0.02, "heartbeat_interval": 0.1, "stale_after": 1.0}
    ''')
    pytester.makepyfile(test_strict='''
        import pytest
        from aiojobs_engine import Engine, FrozenClock
        from aiojobs_engine.testing import assert_enqueued, drain
        from myapp.jobs import send_welcome

        @pytest.mark.asyncio
        async def test_overridden_fixtures(aiojobs_test_engine):
            assert aiojobs_test_engine.settings.poll_interval == 0.02
            await send_welcome.enqueue(3)
            await assert_enqueued(send_welcome, count=1)

        @pytest.mark.asyncio
        async def test_an_engine_of_the_test_itself(aiojobs_engine_factory, aiojobs_database_url):
            other = Engine()

            @other.job
            async def local_job() -> int:
                return 1

            clock = FrozenClock()
            opened = await aiojobs_engine_factory(other, clock=clock, poll_interval=0.5)
            assert opened is other and other.clock is clock and other.settings.poll_interval == 0.5
            await local_job.options(delay=5).enqueue()
            assert await drain(other, include_delayed=True) == 1

        @pytest.mark.asyncio
        async def test_an_engine_the_test_runs_itself(aiojobs_engine_factory, aiojobs_database_url):
            worker = aiojobs_engine_factory.configure(poll_interval=0.01)
            assert not worker.is_open and worker.url == aiojobs_database_url

            @worker.job
            async def ping() -> str:
                return "pong"

            async with worker.running():
                record = await ping.enqueue()
                assert (await worker.wait_for(record.id, timeout=5)).result == "pong"
    ''')
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_without_the_app_engine_the_error_says_what_to_set(pytester: pytest.Pytester) -> None:
    pytester.makefile(".ini", pytest="[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_none='''
        async def test_it(aiojobs_test_engine):
            pass
    ''')
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*set `aiojobs_engine_app = \"myapp.jobs:engine\"` in the pytest configuration*"])

    pytester.makefile(".ini", pytest="[pytest]\naiojobs_engine_app = os:path\nasyncio_mode = auto\n"
                                     "asyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*aiojobs_engine_app = os:path is a module, not an aiojobs_engine.Engine*"])


@pytest.mark.postgres
def test_a_user_suite_on_postgresql(pytester: pytest.Pytester, postgres_database: str | None) -> None:
    if postgres_database is None:
        pytest.skip(f"no PostgreSQL server answers at {POSTGRES_URL}")
    make_project(pytester)
    pytester.makepyfile(test_pg='''
        from aiojobs_engine.testing import assert_enqueued, drain
        from myapp.jobs import engine, send_welcome

        async def test_on_postgres(aiojobs_test_engine):
            assert engine.url.startswith("postgresql://") and "schema=t_" in engine.url
            await send_welcome.enqueue(1)
            await assert_enqueued(send_welcome, count=1)
            assert await drain(engine) == 1

        async def test_each_test_has_its_own_schema(aiojobs_test_engine):
            await assert_enqueued(send_welcome, count=0)
    ''')
    result = pytester.runpytest("-p", "no:cacheprovider", "--aiojobs-postgres", POSTGRES_URL)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["aiojobs_engine: test databases on PostgreSQL at *"])
    assert asyncio.run(_leftover_databases(f"aiojobs_pytest_{os.getpid()}_")) == []


async def _leftover_databases(prefix: str) -> list[str]:
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_URL, timeout=5)
    try:
        rows = await connection.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1", prefix + "%")
    finally:
        await connection.close()
    return [row["datname"] for row in rows]


# -- the pieces under the fixtures, for suites that choose their databases -----------------------


async def test_the_factory_configures_engines_without_opening_them_and_puts_them_back(tmp_path: Path) -> None:
    url = sqlite_test_url(tmp_path)
    assert url == f"sqlite:///{tmp_path / 'aiojobs.sqlite3'}"
    factory = EngineFactory(url, FAST_SETTINGS)
    mine = Engine(poll_interval=2.0)
    assert factory.configure(mine, heartbeat_interval=0.15) is mine and not mine.is_open
    assert mine.settings.poll_interval == FAST_SETTINGS["poll_interval"] and mine.settings.heartbeat_interval == 0.15
    clock = FrozenClock()
    fresh = factory.configure(clock=clock)
    assert fresh is not mine and fresh.clock is clock
    async with mine:  # the test's to open
        await mine.enqueue("anything")
    assert (tmp_path / "aiojobs.sqlite3").exists()
    await mine.open()  # and a test may leave it open
    await fresh.open()
    await factory.close_all()
    assert not mine.is_open and not fresh.is_open
    assert mine.settings.poll_interval == 2.0 and type(mine.clock).__name__ == "SystemClock"  # put back
    with pytest.raises(TypeError, match=r"takes an aiojobs_engine\.Engine"):
        factory.configure("engine")  # type: ignore[arg-type]


@pytest.mark.postgres
def test_a_postgres_test_database_and_its_schemas_are_created_and_dropped(postgres_database: str | None) -> None:
    if postgres_database is None:
        pytest.skip(f"no PostgreSQL server answers at {POSTGRES_URL}")
    with postgres_test_database(POSTGRES_URL, prefix="aiojobs_check") as database:
        name = database.rsplit("/", 1)[1]
        assert name.startswith(f"aiojobs_check_{os.getpid()}_")
        with postgres_test_schema(database) as url:
            schema = url.rsplit("schema=", 1)[1]
            assert schema.startswith("t_")
            asyncio.run(_enqueue_one(url))
            assert schema in asyncio.run(_schemas(database))
        assert schema not in asyncio.run(_schemas(database))
    assert asyncio.run(_leftover_databases(name)) == []


def test_an_unreachable_server_raises_before_any_database_is_made() -> None:
    with pytest.raises(OSError), postgres_test_database("postgresql://postgres@127.0.0.1:1/postgres"):
        pytest.fail("nothing to yield")


async def _enqueue_one(url: str) -> None:
    async with Engine(url) as engine:
        assert await engine.enqueue("anything") is not None


async def _schemas(database_url: str) -> set[str]:
    import asyncpg

    connection = await asyncpg.connect(database_url, timeout=5)
    try:
        return {row["nspname"] for row in await connection.fetch("SELECT nspname FROM pg_namespace")}
    finally:
        await connection.close()


def test_the_public_database_helpers_refuse_what_they_cannot_use() -> None:
    with pytest.raises(TypeError, match="takes a folder"):
        sqlite_test_url(42)  # type: ignore[arg-type]
    assert sqlite_test_url("relative").startswith("sqlite:////")  # absolute, whatever the cwd later
    # It names a database: no quotes, no spaces.
    with pytest.raises(ValueError, match="prefix must be"), \
            postgres_test_database("postgresql://postgres@127.0.0.1:1/x", prefix='evil"; DROP'):
        pass
