"""An embedded engine is not silent: with no logging set up by the application, what it logs
at the level asked for (WARNING by default) reaches stderr, with the job's context.

The FastAPI case runs a real ``uvicorn`` process with uvicorn's default logging (its own
loggers configured, root left alone), which is where a new user first meets the engine; the
test reads the server's stderr line by line until the lines it waits for come.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from textwrap import dedent

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from aiojobs_engine import ConfigurationError, Engine, Fail
from aiojobs_engine._console import ConsoleHandler
from aiojobs_engine.contrib.aiohttp import setup
from aiojobs_engine.contrib.fastapi import engine_lifespan

APP = '''
import asyncio
import os
from contextlib import asynccontextmanager

from fastapi import FastAPI

from aiojobs_engine import Engine
from aiojobs_engine.contrib.fastapi import engine_lifespan

engine = Engine(shutdown_grace=0.5, poll_interval=0.05)


@engine.job(max_attempts=1)
async def explode(n: int) -> None:
    raise RuntimeError(f"boom {n}")


@engine.job
async def hang() -> None:
    print("hang started", flush=True)      # stdout: the test waits for it before SIGTERM
    await asyncio.Event().wait()


@asynccontextmanager
async def own(app):
    await hang.enqueue()
    await explode.enqueue(7)
    yield


LEVEL = os.environ.get("APP_LOG_LEVEL")
app = FastAPI(lifespan=engine_lifespan(engine, lifespan=own) if LEVEL is None
              else engine_lifespan(engine, lifespan=own, log_level=LEVEL))
'''


class Lines:
    """The lines of a subprocess's stream, read as they come, waited for with a timeout."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.lines: list[str] = []
        self._stream = stream

    async def wait_for(self, predicate: Callable[[str], bool], what: str, timeout: float = 20.0) -> str:
        for line in self.lines:
            if predicate(line):
                return line
        try:
            async with asyncio.timeout(timeout):
                while True:
                    raw = await self._stream.readline()
                    if not raw:
                        break
                    line = raw.decode(errors="replace").rstrip("\n")
                    self.lines.append(line)
                    if predicate(line):
                        return line
        except TimeoutError:
            pass
        pytest.fail(f"no line {what} within {timeout}s; the lines were:\n" + "\n".join(self.lines))


async def start_uvicorn(tmp_path: Path, level: str | None) -> asyncio.subprocess.Process:
    (tmp_path / "app_under_uvicorn.py").write_text(dedent(APP))
    env = {**os.environ, "AIOJOBS_DATABASE_URL": f"sqlite:///{tmp_path / 'jobs.db'}", "PYTHONPATH": str(tmp_path)}
    env.pop("APP_LOG_LEVEL", None)
    if level is not None:
        env["APP_LOG_LEVEL"] = level
    # uvicorn's defaults: no --log-config, so root has no handler, as for a user's first run.
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "uvicorn", "app_under_uvicorn:app", "--port", "0", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


@pytest.mark.slow
@pytest.mark.parametrize("level", [None, "info"])
async def test_a_failed_job_and_a_hand_back_reach_a_default_uvicorn_console(tmp_path: Path,
                                                                             level: str | None) -> None:
    server = await start_uvicorn(tmp_path, level)
    assert server.stdout is not None and server.stderr is not None
    stderr, stdout = Lines(server.stderr), Lines(server.stdout)
    try:
        await stderr.wait_for(lambda line: "Application startup complete" in line, "from uvicorn's start-up")
        failed = await stderr.wait_for(lambda line: "(explode)" in line, "about the failed job")
        assert " ERROR aiojobs_engine: job " in failed and "failed for good: RuntimeError: boom 7" in failed
        assert "[event=job.failed job_id=" in failed and "job=explode queue=default attempt=1]" in failed
        await stdout.wait_for(lambda line: line == "hang started", "from the job that hangs")
        server.send_signal(signal.SIGTERM)
        handed = await stderr.wait_for(lambda line: "back to waiting" in line, "about the hand-back")
        assert " WARNING aiojobs_engine: handed 1 running job(s) back to waiting" in handed
        assert "event=jobs.handed_back" in handed
        rest = await asyncio.wait_for(server.stderr.read(), 20)  # to its end: the server exited
        stderr.lines += rest.decode(errors="replace").splitlines()
        await asyncio.wait_for(server.wait(), 20)
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
    ours = [line for line in stderr.lines if " aiojobs_engine" in line]
    assert sum("(explode)" in line for line in ours) == 1, ours  # one handler: never twice
    assert "Traceback (most recent call last):" in stderr.lines and "RuntimeError: boom 7" in stderr.lines
    started = [line for line in ours if "event=engine.started" in line]
    if level is None:  # WARNING and above: the start line, at INFO, is not shown
        assert started == [] and not any(" INFO aiojobs_engine" in line for line in ours), ours
    else:
        assert len(started) == 1 and ours.index(started[0]) < ours.index(failed), ours
        assert any("(hang) handed back" in line for line in ours), ours


# -- in this process: pytest's handlers on root are set aside for the test --------------------------


@contextmanager
def no_logging_configured(monkeypatch: pytest.MonkeyPatch) -> Iterator[logging.Logger]:
    """Root without handlers, as in a process that never configured logging (pytest's own
    capture handlers come back when the block ends)."""
    package = logging.getLogger("aiojobs_engine")
    with monkeypatch.context() as patch:
        patch.setattr(logging.getLogger(), "handlers", [])
        yield package
    assert not any(isinstance(h, ConsoleHandler) for h in package.handlers), "the console outlived the run"
    assert package.level == logging.NOTSET


async def test_aiohttp_setup_and_engine_running_log_to_stderr(make_engine, monkeypatch, capsys) -> None:
    engine = make_engine()

    @engine.job(max_attempts=1)
    async def refuse(order: int) -> None:
        raise Fail(f"order {order} is not payable")

    async def pay(request: web.Request) -> web.Response:
        record = await refuse.enqueue(int(request.match_info["order"]))
        assert record
        done = await engine.wait_for(record.id, timeout=10)
        return web.json_response({"state": done.state})

    app = web.Application()
    app.router.add_post("/pay/{order}", pay)
    setup(app, engine, log_level="info")
    with no_logging_configured(monkeypatch):
        async with TestClient(TestServer(app)) as client:
            response = await client.post("/pay/12")
            assert await response.json() == {"state": "failed"}
            assert any(isinstance(h, ConsoleHandler) for h in logging.getLogger("aiojobs_engine").handlers)
    err = capsys.readouterr().err
    assert "INFO aiojobs_engine: engine " in err and "[event=engine.started engine=" in err
    assert "ERROR aiojobs_engine: job 1 (refuse) attempt 1 failed for good: Fail: order 12 is not payable" in err
    assert "INFO aiojobs_engine: engine " in err.split("(refuse)")[1]  # the stopping/stopped lines too

    other = make_engine()
    with no_logging_configured(monkeypatch):
        async with other.running(log_level=None):  # the application decides: nothing installed
            assert not any(isinstance(h, ConsoleHandler) for h in logging.getLogger("aiojobs_engine").handlers)
        async with other.running():  # the default, WARNING: the INFO start line is not shown
            pass
    assert "aiojobs_engine" not in capsys.readouterr().err


async def test_with_logging_configured_nothing_is_added(make_engine, capsys) -> None:
    # Under pytest, root has pytest's handlers: the application (here, the test runner) decides.
    engine = make_engine()
    async with engine.running(log_level="debug"):
        assert not any(isinstance(h, ConsoleHandler) for h in logging.getLogger("aiojobs_engine").handlers)
    assert "aiojobs_engine" not in capsys.readouterr().err


def test_a_bad_log_level_is_refused_when_the_app_is_built() -> None:
    engine = Engine()
    with pytest.raises(ConfigurationError, match="log_level must be one of"):
        engine_lifespan(engine, log_level="loud")
    with pytest.raises(ConfigurationError, match="log_level must be one of"):
        setup(web.Application(), engine, log_level="loud")
