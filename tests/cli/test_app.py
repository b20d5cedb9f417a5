"""Loading the engine (`--app`, `$AIOJOBS_APP`, `--url`), exit codes and error lines."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

import aiojobs_engine

from ._helpers import APP, APP_MODULE, Result, enqueue

Cli = Callable[..., Result]


def test_version(cli: Cli) -> None:
    assert cli("--version") == Result(0, f"aiojobs {aiojobs_engine.__version__}\n", "")


def test_no_command_is_bad_usage(cli: Cli) -> None:
    result = cli()
    assert result.code == 2 and "the following arguments are required: COMMAND" in result.err
    unknown = cli("jobs", "frobnicate")
    assert unknown.code == 2 and "invalid choice: 'frobnicate'" in unknown.err


def test_app_and_url_options_before_or_after_the_command(cli: Cli, sqlite_url: str) -> None:
    (record,) = enqueue(sqlite_url, ("add", (1, 2), {}))
    for argv in (
        ["--app", APP, "--url", sqlite_url, "--json", "jobs", "show", str(record.id)],
        ["jobs", "show", str(record.id), "--app", APP, "--url", sqlite_url, "--json"],
        ["--app", APP, "jobs", "show", str(record.id), "--json", "--url", sqlite_url],
    ):
        result = cli(*argv)
        assert result.code == 0, (argv, result.err)
        assert json.loads(result.out)["id"] == record.id


def test_app_from_the_environment(cli: Cli, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOJOBS_APP", f"{APP_MODULE}:not_an_engine")
    result = cli("workoff", "--url", sqlite_url)  # the variable counts as --app for workers too
    assert result.code == 2 and result.err.startswith(f"aiojobs: error: --app {APP_MODULE}:not_an_engine: ")
    assert cli("jobs", "list", "--app", APP, "--url", sqlite_url).code == 0  # --app wins over the variable


def test_dotted_attribute(cli: Cli, sqlite_url: str) -> None:
    assert cli("jobs", "list", "--app", f"{APP_MODULE}:Holder.engine", "--url", sqlite_url).code == 0


def test_bare_engine_uses_the_database_url_variable(cli: Cli, sqlite_url: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    enqueue(sqlite_url, ("add", (1, 2), {}))
    monkeypatch.setenv("AIOJOBS_DATABASE_URL", sqlite_url)
    assert len(json.loads(cli("jobs", "list", "--json").out)) == 1


@pytest.mark.parametrize("spec, message", [
    ("tests.apps.cli_app", "--app must look like module:attribute (for example myapp.jobs:engine), "
                           "got 'tests.apps.cli_app'"),
    (":engine", "--app must look like module:attribute (for example myapp.jobs:engine), got ':engine'"),
    ("no_such_module_here:engine", "--app no_such_module_here:engine: no module named 'no_such_module_here' "
                                   "(run from the project's directory, or put it on PYTHONPATH)"),
    ("tests.apps.nope:engine", "--app tests.apps.nope:engine: no module named 'tests.apps.nope' "
                               "(run from the project's directory, or put it on PYTHONPATH)"),
    (f"{APP_MODULE}:missing", f"--app {APP_MODULE}:missing: '{APP_MODULE}' has no attribute 'missing'"),
    (f"{APP_MODULE}:Holder.nope", f"--app {APP_MODULE}:Holder.nope: '{APP_MODULE}.Holder' has no attribute 'nope'"),
    (f"{APP_MODULE}:not_an_engine", f"--app {APP_MODULE}:not_an_engine: {APP_MODULE}.not_an_engine is a str, "
                                    "not an aiojobs_engine.Engine"),
])
def test_app_errors(cli: Cli, sqlite_url: str, spec: str, message: str) -> None:
    result = cli("jobs", "list", "--app", spec, "--url", sqlite_url)
    assert (result.code, result.out, result.err) == (2, "", f"aiojobs: error: {message}\n")


def test_app_from_the_working_directory_and_its_import_errors(
    cli: Cli, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cli_local_app.py").write_text("from aiojobs_engine import Engine\nengine = Engine()\n")
    (tmp_path / "cli_broken_app.py").write_text("raise RuntimeError('settings are\\nmissing')\n")
    (tmp_path / "cli_needy_app.py").write_text("import cli_missing_dependency\n")
    monkeypatch.chdir(tmp_path)
    for name in ("cli_local_app", "cli_broken_app", "cli_needy_app"):
        monkeypatch.delitem("sys.modules", name, raising=False)
    assert cli("jobs", "list", "--app", "cli_local_app:engine", "--url", sqlite_url).code == 0
    broken = cli("jobs", "list", "--app", "cli_broken_app:engine", "--url", sqlite_url)
    assert broken.code == 2
    assert broken.err == ("aiojobs: error: --app cli_broken_app:engine: importing 'cli_broken_app' failed: "
                          "RuntimeError: settings are missing\n")
    needy = cli("jobs", "list", "--app", "cli_needy_app:engine", "--url", sqlite_url)
    assert needy.code == 2
    assert needy.err == ("aiojobs: error: --app cli_needy_app:engine: importing 'cli_needy_app' failed: "
                         "ModuleNotFoundError: No module named 'cli_missing_dependency'\n")


@pytest.mark.parametrize("command", [["work"], ["workoff"]])
def test_workers_need_the_app(cli: Cli, sqlite_url: str, command: list[str]) -> None:
    result = cli(*command, "--url", sqlite_url)
    assert result.code == 2
    assert result.err == (f"aiojobs: error: {command[0]} needs --app module:attribute (or $AIOJOBS_APP) naming "
                          "the application's engine: a worker without the application's jobs would fail every job\n")


def test_bad_url_is_bad_usage(cli: Cli) -> None:
    result = cli("jobs", "list", "--url", "mysql://localhost/jobs")
    assert result.code == 2
    assert result.err.startswith("aiojobs: error: unsupported database URL scheme 'mysql'")


def test_database_errors_fail(cli: Cli, tmp_path: Path) -> None:
    not_a_database = tmp_path / "garbage.db"
    not_a_database.write_bytes(b"this is not a SQLite database" * 100)
    result = cli("jobs", "list", "--url", f"sqlite:///{not_a_database}")
    assert result.code == 1
    assert result.err.startswith("aiojobs: error: ") and result.err.count("\n") == 1
    assert "file is not a database" in result.err
