"""``aiojobs dashboard``: options, the loopback default, and a real server in a subprocess."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from aiojobs_engine import Engine
from aiojobs_engine._cli import main
from aiojobs_engine._cli._dashboard import allowed_hosts_for, exposure_warning, is_loopback
from aiojobs_engine._cli._parser import build_parser
from tests._waiting import eventually, still_running

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite file: the dashboard, like every inspecting command, creates no database."""
    url = f"sqlite:///{tmp_path / 'aiojobs.sqlite3'}"
    asyncio.run(Engine(url).migrate())
    return url


def test_defaults_listen_on_loopback_only() -> None:
    args = build_parser().parse_args(["dashboard"])
    assert (args.host, args.port, args.read_only, args.basic_auth) == ("127.0.0.1", 8686, False, None)
    args = build_parser().parse_args(["dashboard", "--app", "x:engine", "--host", "0.0.0.0", "--port", "9000",
                                      "--read-only", "--basic-auth", "u:p"])
    assert (args.app, args.host, args.port, args.read_only, args.basic_auth) == ("x:engine", "0.0.0.0", 9000,
                                                                                   True, "u:p")


def test_listening_beyond_this_machine_without_a_password_is_warned_about() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.1.1", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.4", "example.com"))
    assert exposure_warning("127.0.0.1", protected=False, read_only=False) is None
    assert exposure_warning("0.0.0.0", protected=True, read_only=False) is None
    warning = exposure_warning("0.0.0.0", protected=False, read_only=False)
    assert warning is not None and "no authentication" in warning and "--basic-auth" in warning
    assert "delete" not in (exposure_warning("::", protected=False, read_only=True) or "delete")


def test_on_loopback_only_the_loopback_names_are_answered_unless_told_otherwise() -> None:
    """Against DNS rebinding: a page whose name is rebound to 127.0.0.1 sends its own name."""
    loopback = ["localhost", "127.0.0.1", "::1"]
    assert build_parser().parse_args(["dashboard"]).allowed_hosts is None
    args = build_parser().parse_args(["dashboard", "--allowed-host", "jobs.example.com", "--allowed-host", "*.lan"])
    assert args.allowed_hosts == ["jobs.example.com", "*.lan"]
    assert allowed_hosts_for("127.0.0.1", None) == loopback
    assert allowed_hosts_for("[::1]", None) == allowed_hosts_for("localhost", None) == loopback
    assert allowed_hosts_for("127.0.1.1", None) == [*loopback, "127.0.1.1"]  # the address it listens on, too
    assert allowed_hosts_for("127.0.0.1", ["jobs.example.com"]) == ["jobs.example.com"]
    assert allowed_hosts_for("0.0.0.0", None) is None  # reachable by whatever names lead here: any
    assert allowed_hosts_for("0.0.0.0", ["*.lan"]) == ["*.lan"]


@pytest.mark.parametrize("argv, message", [
    (["--allowed-host", "localhost:8686"], "without a port"),
    (["--allowed-host", ""], "non-empty strings"),
    (["--basic-auth", "nocolon"], "must look like user:password"),
    (["--basic-auth", ":pw"], "must look like user:password"),
    (["--port", "70000"], "--port must be between"),
    (["--root-path", "jobs"], "--root-path must start with '/'"),
    (["--refresh", "0.01"], "--refresh must be 0 (off) or between 0.1 and 3600 seconds, got 0.01"),
    (["--refresh", "-1"], "--refresh must be 0 (off)"),
])
def test_bad_options_are_usage_errors(argv: list[str], message: str, sqlite_url: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboard", "--url", sqlite_url, *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_port_in_use_is_a_clear_failure(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert main(["dashboard", "--url", sqlite_url, "--port", str(port)]) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port: int = probe.getsockname()[1]
        return port


def _listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on ``port`` (Linux: /proc/net/tcp{,6})."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the listening sockets from /proc (Linux)")
def test_the_command_serves_on_loopback_with_basic_auth(sqlite_url: str) -> None:
    port = _free_port()
    env = {**os.environ, "AIOJOBS_DASHBOARD_BASIC_AUTH": "ops:pw"}
    env.pop("AIOJOBS_APP", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "aiojobs_engine", "dashboard", "--url", sqlite_url, "--port", str(port), "--read-only",
         "--log-level", "warning", "--refresh", "2.5"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        response = _wait_until_serving(process, f"http://127.0.0.1:{port}/")
        assert response.status_code == 401
        assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only, no IPv6 or wildcard
        auth = {"Authorization": "Basic " + base64.b64encode(b"ops:pw").decode()}
        page = httpx.get(f"http://127.0.0.1:{port}/", headers=auth, timeout=5)
        assert page.status_code == 200 and "read-only" in page.text
        assert 'data-refresh="2500"' in page.text  # --refresh 2.5
        refused = httpx.post(f"http://127.0.0.1:{port}/queues/default/pause", headers=auth, timeout=5)
        assert refused.status_code == 403
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert f"at http://127.0.0.1:{port}/ (read-only)" in err
    assert "ops:pw" not in err and "warning" not in err.lower().replace("--log-level", "")
    assert process.returncode in (0, 130)


def _serve(sqlite_url: str, port: int, *options: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    for name in ("AIOJOBS_APP", "AIOJOBS_DASHBOARD_BASIC_AUTH"):
        env.pop(name, None)
    return subprocess.Popen(
        [sys.executable, "-m", "aiojobs_engine", "dashboard", "--url", sqlite_url, "--port", str(port),
         "--log-level", "warning", *options],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_until_serving(process: subprocess.Popen[str], url: str) -> httpx.Response:
    """The first answer of the dashboard at ``url`` (a plain function: the test has no loop)."""
    def answer() -> httpx.Response | None:
        still_running(process)
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            return None

    return asyncio.run(eventually(answer, timeout=30, interval=0.1, message="the dashboard serving"))


@pytest.mark.slow
def test_the_command_on_loopback_refuses_a_rebinding_page(sqlite_url: str) -> None:
    """The audit's repro: with no authentication, a page on evil.example rebound to 127.0.0.1
    got the page and a CSRF cookie for its name, and could then pause a queue."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    evil = {"Host": f"evil.example:{port}"}
    process = _serve(sqlite_url, port)
    try:
        _wait_until_serving(process, f"{base}/static/dashboard.css")
        with httpx.Client(base_url=base, timeout=5) as client:
            refused = client.get("/", headers=evil)
            assert refused.status_code == 400 and "set-cookie" not in refused.headers
            assert "csrf_token" not in refused.text
            assert client.get("/", headers={"Host": f"localhost:{port}"}).status_code == 200
            assert client.get("/").status_code == 200  # 127.0.0.1: the cookie and the token
            token = client.cookies["aiojobs_csrf"]
            attack = client.post("/queues/email/pause", headers=evil, data={"csrf_token": token})
            assert attack.status_code == 400
            own = client.post("/queues/email/pause", data={"csrf_token": token}, headers={"Origin": base})
            assert own.status_code == 303 and own.headers["location"] == "/?notice=paused"
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    assert process.returncode in (0, 130)
    again = _serve(sqlite_url, port, "--allowed-host", "jobs.example.com")  # then only the names given
    try:
        _wait_until_serving(again, f"{base}/static/dashboard.css")
        assert httpx.get(f"{base}/", headers={"Host": "jobs.example.com"}, timeout=5).status_code == 200
        assert httpx.get(f"{base}/", timeout=5).status_code == 400
    finally:
        again.send_signal(signal.SIGINT)
        again.communicate(timeout=30)
