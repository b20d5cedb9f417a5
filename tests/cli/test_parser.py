"""The grammar: global options before or after every command, and bare groups that list."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator

import pytest

from aiojobs_engine._cli._parser import build_parser

from ._helpers import APP, Result, enqueue

Cli = Callable[..., Result]
GLOBAL = ["--app", "x.y:engine", "--url", "sqlite:///g.db", "--config", "g.toml", "--json"]
EXPECTED = {"app": "x.y:engine", "url": "sqlite:///g.db", "config": "g.toml", "json": True}
# A value for each required positional argument, by its name.
POSITIONAL = {"id": "7", "queue": "email", "name": "nightly"}
REQUIRED_OPTIONS = {"snooze": ["--delay", "5"]}


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command path the parser accepts (a group that runs bare counts too)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name)
                yield from commands(sub, (*path, name))


def argv_for(path: tuple[str, ...]) -> list[str]:
    parser = build_parser()
    for word in path:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[word]
    positional = [POSITIONAL[a.dest] for a in parser._actions if not a.option_strings and a.dest in POSITIONAL]
    if path[-1] == "enqueue":
        positional = ["add"]
    return [*path, *positional, *REQUIRED_OPTIONS.get(path[-1], [])]


ALL = sorted(set(commands(build_parser())))


def test_every_command_is_covered() -> None:
    names = {" ".join(p) for p in ALL}
    assert {"jobs", "jobs list", "queues", "queues delete", "cron", "work", "worker", "workoff", "migrate",
            "status", "dashboard", "enqueue", "healthcheck"} <= names


@pytest.mark.parametrize("path", ALL, ids=" ".join)
def test_global_options_go_before_or_after_every_command(path: tuple[str, ...]) -> None:
    argv = argv_for(path)
    before = vars(build_parser().parse_args([*GLOBAL, *argv]))
    after = vars(build_parser().parse_args([*argv, *GLOBAL]))
    for key, value in EXPECTED.items():
        assert before[key] == value and after[key] == value, (path, key)


def test_json_is_refused_by_commands_that_print_none(cli: Cli, sqlite_url: str) -> None:
    for argv, command in ((["work", "--json"], "work"), (["--json", "worker"], "worker")):
        result = cli(*argv, "--app", APP, "--url", sqlite_url)
        assert (result.code, result.err) == (2, f"aiojobs: error: {command} prints no JSON (it logs as it runs); "
                                                "drop --json\n")


def test_bare_jobs_lists_and_takes_the_filters(cli: Cli, sqlite_url: str) -> None:
    enqueue(sqlite_url, ("add", (1, 2), {}), ("add", (3, 4), {"queue": "email"}))
    bare = cli("jobs", "--url", sqlite_url)
    assert bare.code == 0 and bare.out == cli("jobs", "list", "--url", sqlite_url).out
    email = json.loads(cli("jobs", "--queue", "email", "--json", "--url", sqlite_url).out)
    assert [j["queue"] for j in email] == ["email"]
    before_list = json.loads(cli("jobs", "--queue", "email", "list", "--json", "--url", sqlite_url).out)
    assert [j["queue"] for j in before_list] == ["email"]
