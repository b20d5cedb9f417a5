"""FastAPI/Starlette lifespan and aiohttp setup, in process (the examples run them over real HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from fastapi import FastAPI

from aiojobs_engine import ConfigurationError, JobState
from aiojobs_engine.contrib.aiohttp import ENGINE_KEY, setup
from aiojobs_engine.contrib.fastapi import engine_lifespan


async def test_the_fastapi_lifespan_runs_the_engine_around_the_apps_own(make_engine) -> None:
    engine = make_engine()
    steps: list[str] = []

    @engine.job
    async def warm_cache(reason: str) -> str:
        return reason

    @asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[dict[str, str]]:
        assert engine.is_open and engine.is_running  # the engine is up before the app's start-up code
        await warm_cache.enqueue("start-up")
        steps.append("app started")
        yield {"greeting": "hello"}
        steps.append("app stopping")
        await warm_cache.enqueue("shut-down")  # still open while the app shuts down

    app = FastAPI(lifespan=engine_lifespan(engine, lifespan=own))

    @app.get("/state")
    async def state() -> dict[str, object]:
        record = await warm_cache.enqueue("request")
        assert record
        done = await engine.wait_for(record.id, timeout=10)
        return {"state": done.state, "result": done.result}

    async with app.router.lifespan_context(app) as lifespan_state:
        assert lifespan_state == {"greeting": "hello"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            response = await client.get("/state")
        assert response.json() == {"state": "completed", "result": "request"}
    assert steps == ["app started", "app stopping"]
    assert not engine.is_open and not engine.is_running
    async with engine:
        jobs = await engine.list_jobs()
        assert {j.result for j in jobs if j.state is JobState.COMPLETED} >= {"start-up", "request"}


async def test_the_fastapi_lifespan_can_open_without_running(make_engine) -> None:
    engine = make_engine()
    lifespan = engine_lifespan(engine, run=False)
    async with lifespan(object()) as state:
        assert state is None and engine.is_open and not engine.is_running
    assert not engine.is_open
    with pytest.raises(ConfigurationError, match=r"takes an aiojobs_engine\.Engine"):
        engine_lifespan("engine")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="run must be True or False"):
        engine_lifespan(engine, run="yes")  # type: ignore[arg-type]


async def test_aiohttp_setup_opens_runs_and_closes_the_engine(make_engine) -> None:
    engine = make_engine()

    @engine.job
    async def greet(name: str) -> str:
        return f"hello {name}"

    async def enqueue(request: web.Request) -> web.Response:
        jobs = request.app[ENGINE_KEY]
        record = await greet.enqueue(request.match_info["name"])
        assert record
        done = await jobs.wait_for(record.id, timeout=10)
        return web.json_response({"state": done.state, "result": done.result})

    app = web.Application()
    app.router.add_get("/greet/{name}", enqueue)
    setup(app, engine)
    assert app[ENGINE_KEY] is engine
    async with TestClient(TestServer(app)) as client:
        assert engine.is_open and engine.is_running
        response = await client.get("/greet/ada")
        assert await response.json() == {"state": "completed", "result": "hello ada"}
    assert not engine.is_open and not engine.is_running

    async with engine:  # already open, as the pytest plugin's fixtures leave it: setup's open nests
        nested = web.Application()
        setup(nested, engine)
        async with TestClient(TestServer(nested)):
            assert engine.is_running
        assert engine.is_open and not engine.is_running

    enqueue_only = web.Application()
    setup(enqueue_only, engine, run=False)
    async with TestClient(TestServer(enqueue_only)):
        assert engine.is_open and not engine.is_running
    assert not engine.is_open
    with pytest.raises(ConfigurationError, match=r"takes an aiojobs_engine\.Engine"):
        setup(web.Application(), None)  # type: ignore[arg-type]
