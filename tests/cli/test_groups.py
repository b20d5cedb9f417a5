"""Worker groups, `aiojobs worker`, and the detached commands' pid file handling (no supervisor runs here;
tests/e2e/test_supervisor.py runs real ones)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aiojobs_engine import Engine, WorkerGroup
from aiojobs_engine._cli._config import load_config
from aiojobs_engine._cli._errors import UsageError
from aiojobs_engine._cli._pidfile import PidFile, inspect, state_path
from aiojobs_engine._groups import host_label
from tests._waiting import eventually, still_running

from ._helpers import APP, Result, with_engine

Cli = Callable[..., Result]
ROOT = Path(__file__).resolve().parents[2]
HOST = host_label(socket.gethostname())

CONFIG = """\
app = "tests.apps.cli_app:engine"

[groups.mail]
queues = ["email"]
processes = 2
concurrency = 3
max_attempts = 4
poll_interval = 0.5
failed_retention = "forever"

[groups.rest]
queues = "*"
"""


def write(folder: Path, text: str, name: str = "aiojobs.toml") -> str:
    path = folder / name
    path.write_text(text)
    return str(path)


def test_config_file_declares_groups(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CONFIG))
    assert config.app == "tests.apps.cli_app:engine" and config.url is None
    assert config.groups == (
        WorkerGroup("mail", queues=["email"], processes=2, concurrency=3, max_attempts=4, poll_interval=0.5,
                    failed_retention=None),
        WorkerGroup("rest"),
    )


@pytest.mark.parametrize(("text", "message"), [
    ("groups = 1\n", "groups must be tables, as [groups.NAME]"),
    ("[groups]\nmail = 1\n", "groups.mail must be a table ([groups.mail])"),
    ("workers = 2\n", "unknown key(s) 'workers'; accepted: app, groups, url"),
    ("app = 3\n", "app must be a string, got 3"),
    ("[groups.mail]\nprocesses = 0\n", "worker group 'mail': processes must be between 1 and 1024, got 0"),
    ("[groups.mail]\nprocess = 2\n", "worker group 'mail': unknown setting(s) 'process'"),
    ("[groups.mail]\nqueues = [\n", "not valid TOML"),
])
def test_config_file_errors(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"--config {path}: {message}"), str(caught.value)


def test_missing_config_file(cli: Cli, tmp_path: Path) -> None:
    result = cli("work", "--config", str(tmp_path / "nope.toml"))
    assert (result.code, result.err) == (2, f"aiojobs: error: --config {tmp_path / 'nope.toml'}: no such file\n")


@pytest.mark.parametrize(("argv", "message"), [
    (["--processes", "0"], "argument --processes: --processes must be between 1 and 1024, got 0"),
    (["--processes", "two"], "argument --processes: --processes takes a whole number, got 'two'"),
    (["--max-restarts", "-1"], "argument --max-restarts: --max-restarts must be between 0 and 1000, got -1"),
])
def test_supervisor_option_errors(cli: Cli, argv: list[str], message: str) -> None:
    result = cli("work", "--app", APP, *argv)
    assert result.code == 2 and message in result.err


def test_work_group_choice_errors(cli: Cli, tmp_path: Path, sqlite_url: str) -> None:
    none_declared = cli("work", "--app", APP, "--url", sqlite_url, "--group", "mail")
    assert (none_declared.code, none_declared.err) == (
        2, "aiojobs: error: no worker group is declared (Engine(groups=...) or --config); --group mail names none\n")
    config = write(tmp_path, CONFIG)
    unknown = cli("work", "--config", config, "--url", sqlite_url, "--group", "nope")
    assert (unknown.code, unknown.err) == (2, "aiojobs: error: no worker group named 'nope'; declared: 'mail', "
                                              "'rest'\n")
    queues = cli("work", "--config", config, "--url", sqlite_url, "--queues", "a")
    assert queues.code == 2 and "this application declares worker groups: choose among them with --group" in queues.err
    misfit = write(tmp_path, "[groups.slow]\nheartbeat_interval = 10\n", "misfit.toml")
    result = cli("work", "--app", APP, "--config", misfit, "--url", sqlite_url)
    assert result.code == 2 and "worker group 'slow': stale_after must be at least 3 x heartbeat_interval" in result.err


def test_worker_usage_errors(cli: Cli, tmp_path: Path, sqlite_url: str) -> None:
    result = cli("worker", "--app", APP, "--url", sqlite_url, "--group", "mail")
    assert result.code == 2 and "no worker group is declared" in result.err and "'default'" in result.err
    result = cli("worker", "--config", write(tmp_path, CONFIG), "--url", sqlite_url, "--group", "nope")
    assert (result.code, result.err) == (2, "aiojobs: error: no worker group named 'nope'; declared: 'mail', "
                                            "'rest'\n")
    result = cli("worker", "--app", APP, "--id", "-1")
    assert result.code == 2 and "--id must be between 0 and 99999, got -1" in result.err


def _worker(folder: Path, *argv: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "aiojobs_engine", "worker", *argv], cwd=folder,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_engine(url: str, process: subprocess.Popen[str], worker_id: str) -> None:
    async def registered(engine: Engine) -> bool:
        still_running(process)
        return worker_id in [e.id for e in await engine.list_engines()]

    with_engine(url, lambda engine: eventually(lambda: registered(engine), timeout=15, interval=0.05,
                                               message="the worker registered"))


@pytest.mark.slow
@pytest.mark.timeout(30)
def test_worker_of_a_config_group_runs_under_its_stable_id_with_its_settings(tmp_path: Path, sqlite_url: str) -> None:
    folder = tempfile.mkdtemp(dir="/tmp")  # a short path: a unix socket's is at most 107 bytes
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(f"{folder}/notify")
    notify.settimeout(15)
    worker = _worker(tmp_path, "--config", write(tmp_path, CONFIG), "--url", sqlite_url, "--group", "mail", "--id",
                     "1", NOTIFY_SOCKET=f"{folder}/notify")
    try:
        assert notify.recv(100) == b"READY=1"  # for systemd's Type=notify
        _wait_for_engine(sqlite_url, worker, f"{HOST}:mail:1")

        async def check(engine: Engine) -> None:
            (record,) = [e for e in await engine.list_engines()]
            assert record.queues == ["email"] and record.pid == worker.pid
            queue = {q.name: q for q in await engine.list_queues()}["email"]
            assert queue.concurrency == 3

        with_engine(sqlite_url, check)
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=15)
        assert notify.recv(100) == b"STOPPING=1"
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
        notify.close()
        shutil.rmtree(folder)
    assert worker.returncode == 0, err
    assert "received SIGTERM: stopping gracefully" in err


@pytest.mark.slow
@pytest.mark.timeout(30)
def test_worker_refuses_to_start_when_its_supervisor_is_already_gone(tmp_path: Path, sqlite_url: str) -> None:
    worker = _worker(tmp_path, "--app", APP, "--url", sqlite_url, "--supervisor-pid", "1")
    _, err = worker.communicate(timeout=15)
    assert (worker.returncode, err) == (1, "aiojobs: error: the supervisor (pid 1) is gone; not starting\n")


# -- pid files -------------------------------------------------------------------------------


@pytest.fixture
def pidfile(tmp_path: Path) -> Path:
    return tmp_path / "aiojobs.pid"


@pytest.fixture
def another_program() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


@pytest.mark.parametrize("command", ["status", "stop", "restart"])
def test_control_commands_without_a_supervisor(cli: Cli, pidfile: Path, command: str) -> None:
    result = cli(command, "--pidfile", str(pidfile))
    assert result.out == f"aiojobs is not running (no pid file at {pidfile})\n"
    assert result.code == {"status": 1, "stop": 0, "restart": 1}[command]
    as_json = cli("status", "--pidfile", str(pidfile), "--json")
    assert json.loads(as_json.out) == {"pid": None, "running": False, "pidfile": str(pidfile), "stale": None,
                                       "workers": []}


def test_a_pid_file_whose_process_is_gone_is_stale(cli: Cli, pidfile: Path) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
    gone = int(finished.stdout)
    pidfile.write_text(f"{gone}\n")
    result = cli("status", "--pidfile", str(pidfile), "--json")
    assert result.code == 1
    assert json.loads(result.out)["stale"] == {"pid": gone, "reason": f"pid {gone} is not running"}
    stopped = cli("stop", "--pidfile", str(pidfile))
    assert (stopped.code, stopped.out) == (0, f"aiojobs is not running: stale pid file {pidfile} (pid {gone} is "
                                              "not running)\n")
    assert not pidfile.exists()


def test_a_pid_file_naming_another_program_is_stale_and_never_signalled(
        cli: Cli, pidfile: Path, another_program: subprocess.Popen[bytes]) -> None:
    pidfile.write_text(f"{another_program.pid}\n")
    state_path(pidfile).write_text(json.dumps({"pid": another_program.pid, "start_time": 1, "workers": []}))
    result = cli("status", "--pidfile", str(pidfile))
    assert result.code == 1
    assert result.out.startswith(f"aiojobs is not running: stale pid file {pidfile} (pid {another_program.pid} is "
                                 "now another program (")
    assert "time.sleep(60)" in result.out
    assert cli("stop", "--pidfile", str(pidfile)).code == 0
    assert another_program.poll() is None  # it was not signalled
    pidfile.write_text("garbage\n")
    result = cli("status", "--pidfile", str(pidfile))
    assert result.out == f"aiojobs is not running: stale pid file {pidfile} (it holds 'garbage', not a pid)\n"


def test_the_lock_tells_a_live_supervisor(cli: Cli, pidfile: Path, sqlite_url: str) -> None:
    held = PidFile(pidfile)
    held.acquire()
    try:
        held.publish({"pid": os.getpid(), "start_time": None, "state": "running", "started_at": "then",
                      "workers": [{"pid": 1, "group": "g", "id": "h:g:0", "started_at": "now", "running": True}]})
        found = inspect(pidfile)
        assert found is not None and found.live and found.pid == os.getpid()
        status = cli("status", "--pidfile", str(pidfile), "--json")
        assert status.code == 0
        assert json.loads(status.out)["workers"] == [
            {"pid": 1, "group": "g", "id": "h:g:0", "started_at": "now", "running": True}]
        text = cli("status", "--pidfile", str(pidfile))
        assert f"supervisor pid {os.getpid()}, running, since then: 1 of 1 worker(s) running" in text.out
        again = PidFile(pidfile)
        with pytest.raises(Exception, match=f"another aiojobs supervisor \\(pid {os.getpid()}\\) holds {pidfile}"):
            again.acquire()
        started = cli("start", "--app", APP, "--url", sqlite_url, "--pidfile", str(pidfile), "--processes", "1")
        assert (started.code, started.err) == (1, f"aiojobs: error: aiojobs is already running (supervisor pid "
                                                  f"{os.getpid()}, pid file {pidfile})\n")
    finally:
        held.release()
    assert not pidfile.exists() and not state_path(pidfile).exists()


# -- plans: which workers a supervisor runs ----------------------------------------------------


def plan_for(*argv: str) -> list[tuple[str, str, float]]:
    """``aiojobs work ...`` up to the plan (nothing is started): (worker id, its argv, its grace) each."""
    from aiojobs_engine._cli._app import load_engine
    from aiojobs_engine._cli._parser import build_parser
    from aiojobs_engine._cli._work import prepare_work

    sys.modules.pop("tests.apps.groups_app", None)
    args = build_parser().parse_args(["work", *argv])
    args.config_file = load_config(args.config) if getattr(args, "config", None) else None
    args.app_spec = args.app
    prepare_work(load_engine(args.app), args)
    if args.slots is None:
        return []
    return [(s.worker_id, " ".join(s.argv[1:]), s.grace) for s in args.slots]


def test_groups_declared_in_code_make_work_a_supervisor(tmp_path: Path) -> None:
    app = "tests.apps.groups_app:engine"
    common = f"--log-level info --app {app} --url sqlite:///x.db"
    assert plan_for("--app", app, "--url", "sqlite:///x.db") == [
        (f"{HOST}:mail:0", f"-m aiojobs_engine worker --group mail --id 0 {common}", 8.0),
        (f"{HOST}:mail:1", f"-m aiojobs_engine worker --group mail --id 1 {common}", 8.0),
        (f"{HOST}:rest:0", f"-m aiojobs_engine worker --group rest --id 0 {common}", 20.0),
    ]
    assert [w for w, _a, _g in plan_for("--app", app, "--group", "rest", "--processes", "3")] == [
        f"{HOST}:rest:0", f"{HOST}:rest:1", f"{HOST}:rest:2"]
    config = write(tmp_path, "[groups.mail]\nqueues = [\"email\"]\nprocesses = 1\n")
    assert [w for w, _a, _g in plan_for("--app", app, "--config", config)] == [f"{HOST}:rest:0", f"{HOST}:mail:0"]


def test_without_groups_work_stays_in_process_unless_asked(tmp_path: Path) -> None:
    assert plan_for("--app", APP) == []
    workers = plan_for("--app", APP, "--processes", "2", "--queues", "a,b", "--create", "--concurrency", "3")
    assert [w for w, _a, _g in workers] == [f"{HOST}:default:0", f"{HOST}:default:1"]
    assert workers[1][1].endswith(f"worker --group default --id 1 --log-level info --app {APP} --queues a,b "
                                  "--create --concurrency 3")
    assert len(plan_for("--app", APP, "--pidfile", str(tmp_path / "x.pid"))) >= 1  # one per core


def test_the_supervisor_checks_the_queues_of_its_workers_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with pytest.raises(UsageError, match="no queue named 'emial' is known"):
        plan_for("--app", APP, "--url", url, "--processes", "2", "--queues", "emial")
    workers = plan_for("--app", APP, "--url", url, "--processes", "2", "--queues", "default")
    assert workers[0][1].endswith("--queues default --create")
