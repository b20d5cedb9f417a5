"""Every example in examples/ runs, as a user would run it, and does what it says."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests._waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def run_example(name: str, cwd: Path, url: str | None = None) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if url is not None:
        env["AIOJOBS_DATABASE_URL"] = url
    else:
        env.pop("AIOJOBS_DATABASE_URL", None)
    result = subprocess.run([sys.executable, str(EXAMPLES / name)], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_quickstart_uses_the_default_database(tmp_path: Path) -> None:
    out = run_example("quickstart.py", tmp_path)
    assert (tmp_path / "aiojobs.sqlite3").exists()
    assert out.count("completed") == 4, out
    assert "send_welcome" in out and "MonthlyReport" in out


def test_quickstart_honours_the_database_url(tmp_path: Path) -> None:
    out = run_example("quickstart.py", tmp_path, url=f"sqlite:///{tmp_path / 'elsewhere.db'}")
    assert (tmp_path / "elsewhere.db").exists() and not (tmp_path / "aiojobs.sqlite3").exists()
    assert out.count("completed") == 4


def test_cpu_bound_example(tmp_path: Path) -> None:
    out = run_example("cpu_bound.py", tmp_path)
    assert out.count("count_primes completed") == 4, out
    assert "runaway      failed     timed out after 0.5s" in out
    engine_pid = int(out.split("engine pid ")[1].split()[0])
    assert str(engine_pid) not in out.split("engine pid")[1].split("\n", 1)[1]  # results came from other pids


def test_embedded_service_example(tmp_path: Path) -> None:
    out = run_example("embedded_service.py", tmp_path)
    assert "processed 10/10 batches" in out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_fastapi_example_over_real_http(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "AIOJOBS_DATABASE_URL": f"sqlite:///{tmp_path / 'api.db'}"}
    server = _start_server(
        [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app", "--port", str(port), "--log-level", "warning"],
        env, tmp_path / "server.log",
    )
    try:
        _sign_up_over_http(f"http://127.0.0.1:{port}", server)
    finally:
        output = _stop_server(server, tmp_path / "server.log")
    # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly.
    assert server.returncode in (0, -15), output
    assert "Traceback" not in output and "ERROR" not in output, output


@pytest.mark.slow
def test_cron_example(tmp_path: Path) -> None:
    out = run_example("cron.py", tmp_path)
    assert "heartbeat-report  */2 * * * * *" in out and "digest-berlin" in out
    runs = [line for line in out.splitlines() if line.strip().startswith("job ")]
    assert len(runs) >= 2, out
    assert "(after None)" in runs[0] and all("(after None)" not in run for run in runs[1:])


def _start_server(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Its output goes to a file, not a pipe: `python -m aiohttp.web` logs at DEBUG, over
    100 kB in a few seconds, and a pipe nobody reads until the end holds 64 kB, after which
    the server blocks on its next log line and stops answering."""
    with log.open("wb") as file:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=file, stderr=subprocess.STDOUT)


def _stop_server(server: subprocess.Popen[bytes], log: Path) -> str:
    server.terminate()
    server.wait(timeout=20)
    return log.read_text(errors="replace")


def _sign_up_over_http(base: str, server: subprocess.Popen[bytes]) -> None:
    """Wait for the app, POST /signup/7, and poll GET /jobs/{id} until the job completed."""
    def serving() -> bool:
        if server.poll() is not None:
            pytest.fail("the app exited during start-up")
        try:
            httpx.get(f"{base}/jobs/1", timeout=1)
        except httpx.TransportError:
            return False
        return True

    asyncio.run(eventually(serving, timeout=20, interval=0.1, message="the app started"))
    created = httpx.post(f"{base}/signup/7", timeout=5)
    assert created.status_code == 202, created.text
    job_id = created.json()["job_id"]
    assert created.json()["state"] == "waiting"

    def completed() -> dict:
        status = httpx.get(f"{base}/jobs/{job_id}", timeout=5).json()
        assert status["state"] == "completed", status
        return status

    status = asyncio.run(eventually(completed, timeout=10, interval=0.05, message="the job completed"))
    assert status["result"] == {"welcomed": 7} and status["attempt"] == 1
    assert httpx.get(f"{base}/jobs/999999", timeout=5).status_code == 404


@pytest.mark.slow
@pytest.mark.parametrize("launch", ["script", "aiohttp.web"])
def test_aiohttp_example_over_real_http(tmp_path: Path, launch: str) -> None:
    port = _free_port()
    env = {**os.environ, "AIOJOBS_DATABASE_URL": f"sqlite:///{tmp_path / 'api.db'}", "PYTHONPATH": str(ROOT)}
    command = (
        [sys.executable, str(EXAMPLES / "aiohttp_app.py"), "--port", str(port)] if launch == "script"
        else [sys.executable, "-m", "aiohttp.web", "-H", "127.0.0.1", "-P", str(port), "examples.aiohttp_app:init_app"]
    )
    server = _start_server(command, env, tmp_path / "server.log")
    try:
        _sign_up_over_http(f"http://127.0.0.1:{port}", server)
    finally:
        output = _stop_server(server, tmp_path / "server.log")
    assert server.returncode in (0, -15), output  # aiohttp exits 0 after a graceful SIGTERM
    assert "Traceback" not in output and "ERROR" not in output, output
    assert (tmp_path / "api.db").exists()
