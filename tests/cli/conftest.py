"""Fixtures for the CLI tests: a fresh copy of the test application per test, and ``cli``.

The CLI runs its own event loop, so these tests are plain functions calling ``main([...])``.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from aiojobs_engine import Engine
from aiojobs_engine._cli import main
from aiojobs_engine.pytest_plugin import sqlite_test_url

from ._helpers import APP_MODULE, Finished, Result, build_finished


@pytest.fixture(autouse=True)
def fresh_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test imports the application anew: `work --queues` configures its engine."""
    monkeypatch.delenv("AIOJOBS_APP", raising=False)
    monkeypatch.delenv("AIOJOBS_DATABASE_URL", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))  # --app adds the working directory
    sys.modules.pop(APP_MODULE, None)
    yield
    sys.modules.pop(APP_MODULE, None)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated, empty SQLite file: inspection commands refuse a file that does not exist."""
    url = sqlite_test_url(tmp_path)
    asyncio.run(Engine(url).migrate())
    return url


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run ``main(argv)`` and return its exit code and what it printed."""

    def run(*argv: str) -> Result:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def _finished_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Finished]:
    folder = tmp_path_factory.mktemp("finished")
    finished = build_finished(f"sqlite:///{folder / 'jobs.db'}")
    sys.modules.pop(APP_MODULE, None)
    return folder, finished


@pytest.fixture
def finished(_finished_template: tuple[Path, Finished], tmp_path: Path) -> Finished:
    """A copy of a database holding a completed, a failed and a delayed job (one workoff, once)."""
    folder, template = _finished_template
    for file in folder.iterdir():
        shutil.copy(file, tmp_path / file.name)
    return replace(template, url=f"sqlite:///{tmp_path / 'jobs.db'}")
