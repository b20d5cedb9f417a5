"""Commands that look or control never create a database; the ones that bring one into use may."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ._helpers import APP, Result

Cli = Callable[..., Result]
ROOT = Path(__file__).resolve().parents[2]

INSPECTING = [
    ("jobs", "list"), ("jobs", "show", "1"), ("jobs", "cancel", "1"), ("queues", "list"),
    ("queues", "pause", "email"), ("queues", "set", "email", "--priority", "1"), ("cron",), ("prune",),
    ("clear", "--yes"),
]
NAMES = ["jobs list", "jobs show", "jobs cancel", "queues list", "queues pause", "queues set", "cron", "prune",
         "clear"]


@pytest.fixture
def empty_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(("argv", "command"), list(zip(INSPECTING, NAMES, strict=True)), ids=NAMES)
def test_with_no_database_named_it_says_how_to_name_one(cli: Cli, empty_dir: Path, argv: tuple[str, ...],
                                                        command: str) -> None:
    result = cli(*argv)
    assert result.code == 2, result.out
    assert result.err.startswith(f"aiojobs: error: {command} needs a database and none is named: pass --url ")
    for hint in ("$AIOJOBS_DATABASE_URL", "--app module:engine", "$AIOJOBS_APP", str(empty_dir / "aiojobs.sqlite3")):
        assert hint in result.err
    assert list(empty_dir.iterdir()) == []


def test_the_default_file_is_used_when_it_is_there(cli: Cli, empty_dir: Path) -> None:
    assert cli("migrate").code == 0  # migrate may create ./aiojobs.sqlite3
    assert (empty_dir / "aiojobs.sqlite3").exists()
    result = cli("jobs", "list")
    assert (result.code, result.out) == (0, "no jobs\n")


@pytest.mark.parametrize("argv", INSPECTING, ids=" ".join)
def test_a_sqlite_file_that_is_not_there_is_refused_by_path(cli: Cli, tmp_path: Path, argv: tuple[str, ...]) -> None:
    missing = tmp_path / "typo.db"
    result = cli(*argv, "--url", f"sqlite:///{missing}")
    assert result.code == 2
    assert f"no database at {missing} (from sqlite:///{missing}); check the path, or create it with `aiojobs " \
           "migrate`" in result.err
    assert not missing.exists()


def test_the_environment_and_the_app_name_a_database_too(cli: Cli, tmp_path: Path, empty_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "env.db"
    monkeypatch.setenv("AIOJOBS_DATABASE_URL", f"sqlite:///{missing}")
    from_env = cli("queues", "list")
    assert from_env.code == 2 and f"no database at {missing}" in from_env.err
    monkeypatch.delenv("AIOJOBS_DATABASE_URL")
    # The test application's engine names no URL: it falls back to ./aiojobs.sqlite3.
    from_app = cli("jobs", "list", "--app", APP)
    assert from_app.code == 2 and f"no database at {empty_dir / 'aiojobs.sqlite3'}" in from_app.err
    assert list(empty_dir.iterdir()) == [] and not missing.exists()


def test_commands_that_bring_a_database_into_use_create_it(cli: Cli, tmp_path: Path) -> None:
    made = tmp_path / "made.db"
    result = cli("workoff", "--app", APP, "--url", f"sqlite:///{made}")
    assert result.code == 0, result.err
    assert made.exists()


def test_a_real_process_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "aiojobs_engine", "jobs", "list"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2, result.stdout
    assert "jobs list needs a database and none is named" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [("jobs", "list"), ("queues", "set", "email", "--priority", "1", "--create")],
                         ids=" ".join)
def test_a_database_without_the_tables_is_refused_and_left_as_it_was(cli: Cli, db_url: str, tmp_path: Path,
                                                                      argv: tuple[str, ...]) -> None:
    """An empty PostgreSQL schema, or a SQLite file that exists but holds no tables: the
    command neither creates nor upgrades the schema; it names `aiojobs migrate`."""
    if db_url.startswith("sqlite"):
        db_url = f"sqlite:///{tmp_path / 'empty.db'}"
        (tmp_path / "empty.db").touch()
    result = cli(*argv, "--url", db_url)
    assert result.code == 1, result.out + result.err
    assert "holds no aiojobs_engine tables yet" in result.err and "`aiojobs migrate`" in result.err
    assert cli("migrate", "--url", db_url).code == 0
    assert cli(*argv, "--url", db_url).code == 0
