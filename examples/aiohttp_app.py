"""An aiohttp app that enqueues from its handlers and runs the engine in the background.

    pip install aiohttp
    python examples/aiohttp_app.py --port 8080
    python -m aiohttp.web -H 127.0.0.1 -P 8080 examples.aiohttp_app:init_app   # the same, from aiohttp

POST /signup/{user_id} returns at once with the job's id; GET /jobs/{id} shows its state.
To scale out, run `aiojobs work --app examples.aiohttp_app:engine` processes against the
same database and call `setup(app, engine, run=False)` in the web processes.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

from aiojobs_engine import Engine
from aiojobs_engine.contrib.aiohttp import ENGINE_KEY, setup

engine = Engine()  # ./aiojobs.sqlite3, or $AIOJOBS_DATABASE_URL


@engine.job(queue="email", max_attempts=5, timeout=30)
async def send_welcome(user_id: int) -> dict:
    await asyncio.sleep(0.05)  # call the mail provider here
    return {"welcomed": user_id}


routes = web.RouteTableDef()


@routes.post("/signup/{user_id}")
async def signup(request: web.Request) -> web.Response:
    record = await send_welcome.enqueue(int(request.match_info["user_id"]))
    assert record is not None
    return web.json_response({"job_id": record.id, "state": record.state}, status=202)


@routes.get("/jobs/{job_id}")
async def job_status(request: web.Request) -> web.Response:
    jobs = request.app[ENGINE_KEY]  # the engine setup() stored on the app
    record = await jobs.get_job(int(request.match_info["job_id"]))
    if record is None:
        raise web.HTTPNotFound(text="no such job")
    return web.json_response({"id": record.id, "name": record.name, "state": record.state, "result": record.result,
                              "attempt": record.attempt, "errors": [e["message"] for e in record.errors]})


def init_app(argv: list[str] | None = None) -> web.Application:
    app = web.Application()
    app.add_routes(routes)
    setup(app, engine)  # opens the database at start-up, works jobs in the background, stops cleanly
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    options = parser.parse_args()
    web.run_app(init_app(), host=options.host, port=options.port)
