"""`aiojobs migrate|prune|clear`."""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from aiojobs_engine import Engine, JobState

from ._helpers import Finished, Result, enqueue, with_engine

Cli = Callable[..., Result]


class Terminal(io.StringIO):
    """A stdin that says it is a terminal, with the user's answer already typed."""

    def isatty(self) -> bool:
        return True


def states(url: str) -> list[JobState]:
    async def go(engine: Engine) -> list[JobState]:
        return sorted(r.state for r in await engine.list_jobs())

    return with_engine(url, go)


def test_migrate(cli: Cli, tmp_path: Path) -> None:
    sqlite_url = f"sqlite:///{tmp_path / 'new.db'}"  # migrate may create the file
    result = cli("migrate", "--url", sqlite_url)
    assert result.code == 0, result.err
    assert result.out == f"applied migration(s) 1, 2, 3, 4, 5 to {sqlite_url}\n"
    again = cli("migrate", "--url", sqlite_url)
    assert again.out == f"the database schema at {sqlite_url} is up to date\n"
    assert json.loads(cli("migrate", "--json", "--url", sqlite_url).out) == {"url": sqlite_url, "applied": []}


def test_prune(cli: Cli, finished: Finished) -> None:
    kept = cli("prune", "--url", finished.url)  # default retention: completed 7 days, failed for ever
    assert (kept.code, kept.out) == (0, "pruned 0 jobs past their retention\n")
    with closing(sqlite3.connect(finished.url.removeprefix("sqlite:///"))) as raw, raw:  # eight days later…
        raw.execute("UPDATE aiojobs_jobs SET expires_at = expires_at - 8 * 86400 * 1000000")
    pruned = cli("prune", "--json", "--url", finished.url)
    assert (pruned.code, json.loads(pruned.out)) == (0, {"deleted": 1})
    assert states(finished.url) == [JobState.FAILED, JobState.WAITING]


def test_clear_with_yes(cli: Cli, sqlite_url: str) -> None:
    enqueue(sqlite_url, ("add", (1, 2), {}), ("add", (1, 2), {"queue": "email"}), ("add", (1, 2), {}))
    only_email = cli("clear", "--queue", "email", "--yes", "--url", sqlite_url)
    assert (only_email.code, only_email.out) == (0, "deleted 1 job\n")
    assert json.loads(cli("clear", "-y", "--json", "--url", sqlite_url).out) == {"deleted": 2}
    assert states(sqlite_url) == []


def test_clear_by_state(cli: Cli, sqlite_url: str) -> None:
    _, second = enqueue(sqlite_url, ("add", (1, 2), {}), ("add", (1, 2), {}))
    cli("jobs", "cancel", str(second.id), "--url", sqlite_url)
    assert cli("clear", "--state", "canceled", "--yes", "--url", sqlite_url).out == "deleted 1 job\n"
    assert states(sqlite_url) == [JobState.WAITING]
    held = cli("clear", "--state", "running", "--yes", "--url", sqlite_url)  # never jobs an engine holds
    assert held.code == 2 and "invalid state 'running'" in held.err


def test_clear_refuses_without_yes_when_it_cannot_ask(cli: Cli, sqlite_url: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    enqueue(sqlite_url, ("add", (1, 2), {}))
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # not a terminal: a piped "y" is no answer
    result = cli("clear", "--url", sqlite_url)
    assert result.code == 2
    assert result.err == ("aiojobs: error: clear deletes jobs: pass --yes to confirm "
                          "(stdin is not a terminal to ask on)\n")
    assert states(sqlite_url) == [JobState.WAITING]


def test_clear_asks_on_a_terminal(cli: Cli, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    enqueue(sqlite_url, ("add", (1, 2), {}), ("add", (1, 2), {}))
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    declined = cli("clear", "--url", sqlite_url)
    assert declined.code == 1
    assert declined.err.startswith("delete 2 jobs (waiting, completed, failed, canceled, snoozed) from ")
    assert declined.err.endswith("? [y/N] aiojobs: nothing deleted\n")
    assert len(states(sqlite_url)) == 2
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    accepted = cli("clear", "--queue", "default", "--url", sqlite_url)
    assert (accepted.code, accepted.out) == (0, "deleted 2 jobs\n")
    assert " in queue(s) default from " in accepted.err
    assert states(sqlite_url) == []
