"""A FastAPI app that enqueues from its handlers and runs the engine in its lifespan.

    pip install fastapi uvicorn
    uvicorn examples.fastapi_app:app

POST /signup/{user_id} returns at once with the job's id; GET /jobs/{id} shows its state.
Run several uvicorn workers, or separate `aiojobs work --app examples.fastapi_app:engine`
processes, against the same database to scale out (then use
`engine_lifespan(engine, run=False)` in the web processes: they only enqueue).
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, HTTPException

from aiojobs_engine import Engine
from aiojobs_engine.contrib.fastapi import engine_lifespan

engine = Engine()  # ./aiojobs.sqlite3, or $AIOJOBS_DATABASE_URL


@engine.job(queue="email", max_attempts=5, timeout=30)
async def send_welcome(user_id: int) -> dict:
    await asyncio.sleep(0.05)  # call the mail provider here
    return {"welcomed": user_id}


# Opens the database, works jobs in the background, and stops cleanly at shut-down.
# With no logging configured, failed jobs are printed on stderr (log_level="info": every job).
app = FastAPI(lifespan=engine_lifespan(engine))


@app.post("/signup/{user_id}", status_code=202)
async def signup(user_id: int) -> dict:
    record = await send_welcome.enqueue(user_id)
    assert record is not None
    return {"job_id": record.id, "state": record.state}


@app.get("/jobs/{job_id}")
async def job_status(job_id: int) -> dict:
    record = await engine.get_job(job_id)
    if record is None:
        raise HTTPException(status_code=404, detail="no such job")
    return {"id": record.id, "name": record.name, "state": record.state, "result": record.result,
            "attempt": record.attempt, "errors": [e["message"] for e in record.errors]}
