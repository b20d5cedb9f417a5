"""`aiojobs healthcheck`, as a probe runs it: a real process and its exit code, on both backends."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

import pytest

from aiojobs_engine import Engine
from aiojobs_engine.testing import FAST_SETTINGS

ROOT = Path(__file__).resolve().parents[2]


async def healthcheck(*argv: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aiojobs_engine", "healthcheck", *argv, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


@pytest.mark.timeout(60)
async def test_healthy_then_engines_required(db_url: str) -> None:
    await Engine(db_url).migrate()
    code, out = await healthcheck("--url", db_url)
    assert code == 0, out
    assert out.startswith("healthy: ") and ", 0 engine(s) alive\n" in out
    code, out = await healthcheck("--url", db_url, "--require-engines", "1")
    assert (code, out) == (5, "unhealthy: 0 engine(s) alive (a heartbeat within 15s), 1 required\n")
    engine = Engine(db_url, worker_id="probe-me", **FAST_SETTINGS)
    async with engine.running():
        code, out = await healthcheck("--url", db_url, "--require-engines", "1", "--engine", "probe-me", "--json")
        assert code == 0, out
        report = json.loads(out)
        assert report["healthy"] and report["engines_alive"] == ["probe-me"]
        code, out = await healthcheck("--url", db_url, "--engine", "probe-you")
        assert (code, out) == (5, "unhealthy: not alive: probe-you (no heartbeat within 15s)\n")


async def test_a_schema_behind_or_ahead_is_4_and_never_migrated(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    url = f"sqlite:///{path}"
    await Engine(url).migrate()
    with closing(sqlite3.connect(path)) as raw, raw:
        raw.execute("INSERT INTO aiojobs_schema (version, name, applied_at) SELECT max(version) + 1, 'future', 0 "
                    "FROM aiojobs_schema")
    code, out = await healthcheck("--url", url)
    assert code == 4 and "newer than this aiojobs_engine knows" in out
    with closing(sqlite3.connect(path)) as raw, raw:
        raw.execute("DELETE FROM aiojobs_schema WHERE version > 1")
    code, out = await healthcheck("--url", url, "--json")
    assert code == 4 and "run `aiojobs migrate`" in json.loads(out)["problem"]
    with closing(sqlite3.connect(path)) as raw, raw:
        assert raw.execute("SELECT max(version) FROM aiojobs_schema").fetchone() == (1,)  # not migrated


async def test_an_unreachable_database_is_3_and_nothing_is_created(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    code, out = await healthcheck("--url", f"sqlite:///{missing}")
    assert (code, out) == (3, f"unhealthy: no database at {missing}\n")
    assert not missing.exists()
    code, out = await healthcheck("--url", "postgresql://nobody@127.0.0.1:1/none", "--timeout", "5")
    assert code == 3 and out.startswith("unhealthy: the database cannot be reached: ")
