"""`aiojobs queues list|pause|resume|set`."""

from __future__ import annotations

import json
from collections.abc import Callable

from aiojobs_engine import Engine, QueueRecord

from ._helpers import Result, enqueue, with_engine

Cli = Callable[..., Result]
STATES = ["waiting", "claimed", "running", "completed", "failed", "canceled", "snoozed"]


def queues(url: str) -> dict[str, QueueRecord]:
    async def go(engine: Engine) -> dict[str, QueueRecord]:
        return {q.name: q for q in await engine.list_queues()}

    return with_engine(url, go)


def test_list_with_counts(cli: Cli, sqlite_url: str) -> None:
    _, _, third = enqueue(sqlite_url, ("add", (1, 2), {}), ("add", (1, 2), {}), ("add", (1, 2), {"queue": "email"}))
    cli("jobs", "cancel", str(third.id), "--url", sqlite_url)
    cli("queues", "set", "email", "--priority", "5", "--url", sqlite_url)
    result = cli("queues", "list", "--url", sqlite_url)
    assert result.code == 0, result.err
    header, *rows = result.out.splitlines()
    assert header.split() == ["QUEUE", "PRIORITY", "CONCURRENCY", "GLOBAL", "STATUS", *(s.upper() for s in STATES)]
    assert [row.split() for row in rows] == [
        ["email", "5", "10", "-", "active", "0", "0", "0", "0", "0", "1", "0"],
        ["default", "50", "10", "-", "active", "2", "0", "0", "0", "0", "0", "0"],
    ]
    as_json = json.loads(cli("queues", "list", "--json", "--url", sqlite_url).out)
    assert [q["name"] for q in as_json] == ["email", "default"]
    assert set(as_json[1]) == {"name", "concurrency", "priority", "paused", "global_concurrency", "updated_at",
                               "retention", "counts"}
    assert as_json[1]["counts"] == dict.fromkeys(STATES, 0) | {"waiting": 2}
    assert as_json[1]["updated_at"].endswith("+00:00")


def test_list_empty(cli: Cli, sqlite_url: str) -> None:
    assert cli("queues", "list", "--url", sqlite_url).out == "no queues\n"
    assert cli("queues", "list", "--json", "--url", sqlite_url).out == "[]\n"


def test_pause_and_resume(cli: Cli, sqlite_url: str) -> None:
    paused = cli("queues", "pause", "email", "--url", sqlite_url)
    assert (paused.code, paused.out) == (0, "queue email paused\n")
    assert queues(sqlite_url)["email"].paused
    assert "paused" in cli("queues", "list", "--url", sqlite_url).out
    resumed = cli("queues", "resume", "email", "--json", "--url", sqlite_url)
    assert resumed.code == 0
    assert json.loads(resumed.out)["paused"] is False
    assert not queues(sqlite_url)["email"].paused


def test_set(cli: Cli, sqlite_url: str) -> None:
    result = cli("queues", "set", "email", "--concurrency", "3", "--url", sqlite_url)
    assert (result.code, result.out) == (0, "queue email set (concurrency 3, priority 50)\n")
    as_json = json.loads(cli("queues", "set", "email", "--priority", "1", "--json", "--url", sqlite_url).out)
    assert (as_json["concurrency"], as_json["priority"]) == (3, 1)
    stored = queues(sqlite_url)["email"]
    assert (stored.concurrency, stored.priority) == (3, 1)


def test_bad_queue_usage(cli: Cli, sqlite_url: str) -> None:
    nothing = cli("queues", "set", "email", "--url", sqlite_url)
    assert (nothing.code, nothing.err) == (2, "aiojobs: error: queues set needs --concurrency and/or --priority\n")
    zero = cli("queues", "set", "email", "--concurrency", "0", "--url", sqlite_url)
    assert (zero.code, zero.err) == (2, "aiojobs: error: concurrency must be between 1 and 100000, got 0\n")
    bad_name = cli("queues", "pause", "no way", "--url", sqlite_url)
    assert bad_name.code == 2 and bad_name.err.startswith("aiojobs: error: queue must be")
    missing = cli("queues", "pause", "--url", sqlite_url)
    assert missing.code == 2 and "the following arguments are required: Q" in missing.err
