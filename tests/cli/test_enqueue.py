"""`aiojobs enqueue NAME [ARGS...]`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ._helpers import APP, Result, get

Cli = Callable[..., Result]


def test_enqueue_parses_json_arguments_and_words(cli: Cli, sqlite_url: str) -> None:
    result = cli("enqueue", "add", "1", "2", "--url", sqlite_url)
    assert result.code == 0, result.err
    assert result.out == "enqueued job 1 (add)\n"
    record = get(sqlite_url, 1)
    assert (record.name, record.args, record.queue) == ("add", [1, 2], "default")
    mixed = json.loads(cli("enqueue", "anything", "alice", "[1, 2]", '{"a": null}', '"7"', "true", "-3.5",
                           "--kwargs", '{"k": "v"}', "--json", "--url", sqlite_url).out)
    assert (mixed["args"], mixed["kwargs"]) == (["alice", [1, 2], {"a": None}, "7", True, -3.5], {"k": "v"})


def test_enqueue_options(cli: Cli, sqlite_url: str) -> None:
    cli("enqueue", "add", "0", "0", "--url", sqlite_url)  # the queue "default" is stored
    result = cli("enqueue", "add", "1", "2", "--priority", "3", "--delay", "60", "--url", sqlite_url, "--json")
    record = json.loads(result.out)
    assert (record["priority"], record["queue"], record["state"]) == (3, "default", "waiting")
    assert record["available_at"] > record["inserted_at"]
    later = cli("enqueue", "add", "1", "2", "--delay", "60", "--url", sqlite_url)
    assert later.out.startswith("enqueued job 3 (add), available at ")


def test_enqueue_refuses_an_unknown_queue_unless_created(cli: Cli, sqlite_url: str) -> None:
    typo = cli("enqueue", "add", "1", "2", "--queue", "defualt", "--url", sqlite_url)
    assert typo.code == 2 and "did you mean 'default'?" in typo.err
    created = cli("enqueue", "add", "1", "2", "--queue", "email", "--create", "--url", sqlite_url)
    assert (created.code, created.out) == (0, "enqueued job 1 (add) on queue email\n")


def test_bad_input_is_a_clear_usage_error(cli: Cli, sqlite_url: str) -> None:
    broken = cli("enqueue", "add", "[1, 2", "--url", sqlite_url)
    assert broken.code == 2
    assert broken.err.startswith("aiojobs: error: argument '[1, 2' starts like JSON but is not valid JSON: ")
    not_object = cli("enqueue", "add", "--kwargs", "[1]", "--url", sqlite_url)
    assert (not_object.code, not_object.err) == (
        2, "aiojobs: error: --kwargs must be a JSON object, e.g. '{\"user_id\": 42}', got '[1]'\n")
    # With --app the job's signature is known: arguments that do not bind are refused.
    unbound = cli("enqueue", "add", "1", "--app", APP, "--url", sqlite_url)
    assert (unbound.code, unbound.err) == (2, "aiojobs: error: arguments do not fit job 'add'(x: int, y: int) -> "
                                              "int: missing a required argument: 'y'\n")
    bad_priority = cli("enqueue", "add", "1", "2", "--priority", "-5", "--url", sqlite_url)
    assert bad_priority.code == 2 and "priority" in bad_priority.err
    assert cli("jobs", "list", "--json", "--url", sqlite_url).out == "[]\n"  # nothing was stored


def test_enqueue_may_create_the_database(cli: Cli, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    assert cli("enqueue", "add", "1", "2", "--url", url).code == 0
    assert get(url, 1).args == [1, 2]
