"""``aiojobs dashboard``: options, the loopback default, and a real server in a subprocess."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from aiojobs_engine._cli import main
from aiojobs_engine._cli._dashboard import exposure_warning, is_loopback
from aiojobs_engine._cli._parser import build_parser

ROOT = Path(__file__).resolve().parents[2]


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


@pytest.mark.parametrize("argv, message", [
    (["--basic-auth", "nocolon"], "must look like user:password"),
    (["--basic-auth", ":pw"], "must look like user:password"),
    (["--port", "70000"], "--port must be between"),
    (["--root-path", "jobs"], "--root-path must start with '/'"),
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
         "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.1)
        assert response.status_code == 401
        assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only, no IPv6 or wildcard
        auth = {"Authorization": "Basic " + base64.b64encode(b"ops:pw").decode()}
        page = httpx.get(f"http://127.0.0.1:{port}/", headers=auth, timeout=5)
        assert page.status_code == 200 and "read-only" in page.text
        refused = httpx.post(f"http://127.0.0.1:{port}/queues/default/pause", headers=auth, timeout=5)
        assert refused.status_code == 403
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert f"at http://127.0.0.1:{port}/ (read-only)" in err
    assert "ops:pw" not in err and "warning" not in err.lower().replace("--log-level", "")
    assert process.returncode in (0, 130)
