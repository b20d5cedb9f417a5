"""A script that enqueues and runs CPU-bound jobs at its top level, with no
``if __name__ == "__main__":`` guard: each spawned worker imports it again. The engine must
fail at once, say what to do, store the job once, and leave no worker process behind."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from contextlib import closing
from pathlib import Path

import pytest

from tests._waiting import eventually

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import asyncio
from aiojobs_engine import Engine

engine = Engine("sqlite:///{db}", poll_interval=0.2)

@engine.job(cpu_bound=True)
def square(x: int) -> int:
    return x * x

async def main() -> None:
    async with engine:
        await square.enqueue(3)
        await engine.workoff()
        print("state:", (await engine.list_jobs())[0].state)

{call}
"""

UNGUARDED = "asyncio.run(main())"
GUARDED = 'if __name__ == "__main__":\n    asyncio.run(main())'


def run_script(tmp_path: Path, call: str, marker: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.format(db=tmp_path / "jobs.db", call=call))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AIOJOBS_TEST_MARKER": marker}
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)


def processes_marked(marker: str) -> list[int]:
    """Live processes whose environment carries ``marker`` (the script and every worker it spawned)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue  # gone meanwhile, or not ours to read
            if f"AIOJOBS_TEST_MARKER={marker}".encode() in environ.split(b"\0"):
                found.append(int(entry.name))
    return found


def jobs(tmp_path: Path) -> list[tuple[str, int]]:
    with closing(sqlite3.connect(tmp_path / "jobs.db")) as connection:
        rows: list[tuple[str, int]] = connection.execute("SELECT state, attempt FROM aiojobs_jobs").fetchall()
    return rows


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="looks for leftover workers in /proc")
async def test_an_unguarded_script_fails_at_once_saying_what_to_do(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    result = run_script(tmp_path, UNGUARDED, marker)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ConfigurationError" in result.stderr
    assert 'under `if __name__ == "__main__":`' in result.stderr and "script.py" in result.stderr
    assert "state:" not in result.stdout
    assert jobs(tmp_path) == [("waiting", 0)]  # stored once, and its attempt not charged
    await eventually(lambda: not processes_marked(marker), timeout=10, message="every worker process exited")


@pytest.mark.slow
def test_the_same_script_guarded_runs_its_job(tmp_path: Path) -> None:
    result = run_script(tmp_path, GUARDED, uuid.uuid4().hex)
    assert result.returncode == 0, result.stderr
    assert "state: completed" in result.stdout
    assert jobs(tmp_path) == [("completed", 1)]
