"""`aiojobs queues list|pause|resume|set`."""

from __future__ import annotations

import json
from collections.abc import Callable

from aiojobs_engine import Engine, QueueRecord

from ._helpers import APP, Result, app_module, enqueue, with_engine

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
    assert header.split() == ["QUEUE", "PRIORITY", "CONCURRENCY", "GLOBAL", "PER-KEY", "RATE", "KEY-RATE", "STATUS",
                              *(s.upper() for s in STATES)]
    assert [row.split() for row in rows] == [
        ["email", "5", "10", "-", "-", "-", "-", "active", "0", "0", "0", "0", "0", "1", "0"],
        ["default", "50", "10", "-", "-", "-", "-", "active", "2", "0", "0", "0", "0", "0", "0"],
    ]
    as_json = json.loads(cli("queues", "list", "--json", "--url", sqlite_url).out)
    assert [q["name"] for q in as_json] == ["email", "default"]
    assert set(as_json[1]) == {"name", "concurrency", "priority", "paused", "global_concurrency", "updated_at",
                               "retention", "rate_limit", "concurrency_per_key", "rate_limit_per_key", "counts"}
    assert as_json[1]["counts"] == dict.fromkeys(STATES, 0) | {"waiting": 2}
    assert as_json[1]["updated_at"].endswith("+00:00")


def test_list_empty(cli: Cli, sqlite_url: str) -> None:
    assert cli("queues", "list", "--url", sqlite_url).out == "no queues\n"
    assert cli("queues", "list", "--json", "--url", sqlite_url).out == "[]\n"


def test_pause_and_resume(cli: Cli, sqlite_url: str) -> None:
    paused = cli("queues", "pause", "email", "--create", "--url", sqlite_url)
    assert (paused.code, paused.out) == (0, "queue email paused\n")
    assert queues(sqlite_url)["email"].paused
    assert "paused" in cli("queues", "list", "--url", sqlite_url).out
    resumed = cli("queues", "resume", "email", "--json", "--url", sqlite_url)
    assert resumed.code == 0
    assert json.loads(resumed.out)["paused"] is False
    assert not queues(sqlite_url)["email"].paused


def test_set(cli: Cli, sqlite_url: str) -> None:
    result = cli("queues", "set", "email", "--concurrency", "3", "--create", "--url", sqlite_url)
    assert (result.code, result.out) == (0, "queue email set (concurrency 3, priority 50, rate unlimited)\n")
    as_json = json.loads(cli("queues", "set", "email", "--priority", "1", "--json", "--url", sqlite_url).out)
    assert (as_json["concurrency"], as_json["priority"]) == (3, 1)
    stored = queues(sqlite_url)["email"]
    assert (stored.concurrency, stored.priority) == (3, 1)


def test_set_a_rate_limit_and_remove_it(cli: Cli, sqlite_url: str) -> None:
    result = cli("queues", "set", "api", "--rate", "20/1s", "--create", "--url", sqlite_url)
    assert (result.code, result.out) == (0, "queue api set (concurrency 10, priority 50, rate 20/1s)\n")
    assert queues(sqlite_url)["api"].rate_limit == (20, 1.0)
    listed = cli("queues", "list", "--url", sqlite_url).out.splitlines()[1].split()
    assert listed[:8] == ["api", "50", "10", "-", "-", "20/1s", "-", "active"]
    as_json = json.loads(cli("queues", "set", "api", "--rate", "5/500ms", "--json", "--url", sqlite_url).out)
    assert as_json["rate_limit"] == [5, 0.5]
    assert json.loads(cli("queues", "list", "--json", "--url", sqlite_url).out)[0]["rate_limit"] == [5, 0.5]
    assert cli("queues", "set", "api", "--priority", "4", "--url", sqlite_url).code == 0
    assert queues(sqlite_url)["api"].rate_limit == (5, 0.5)  # left out: unchanged
    assert cli("queues", "set", "api", "--rate", "none", "--url", sqlite_url).code == 0
    assert queues(sqlite_url)["api"].rate_limit is None
    for bad, message in (("20", "argument --rate: rate limit takes N/WINDOW"),
                         ("0/1s", "argument --rate: rate limit's starts must be between 1"),
                         ("5/0s", "argument --rate: rate limit's window must be > 0 seconds")):
        refused = cli("queues", "set", "api", "--rate", bad, "--url", sqlite_url)
        assert refused.code == 2 and message in refused.err, refused.err


def test_set_per_key_limits_and_remove_them(cli: Cli, sqlite_url: str) -> None:
    result = cli("queues", "set", "api", "--per-key", "2", "--rate-per-key", "5/1s", "--create", "--url", sqlite_url)
    assert (result.code, result.out) == (
        0, "queue api set (concurrency 10, priority 50, rate unlimited; per key: concurrency 2, rate 5/1s)\n")
    stored = queues(sqlite_url)["api"]
    assert (stored.concurrency_per_key, stored.rate_limit_per_key) == (2, (5, 1.0))
    listed = cli("queues", "list", "--url", sqlite_url).out.splitlines()[1].split()
    assert listed[:8] == ["api", "50", "10", "-", "2", "-", "5/1s", "active"]
    as_json = json.loads(cli("queues", "set", "api", "--rate-per-key", "3/500ms", "--json", "--url", sqlite_url).out)
    assert (as_json["concurrency_per_key"], as_json["rate_limit_per_key"]) == (2, [3, 0.5])
    (listed_json,) = json.loads(cli("queues", "list", "--json", "--url", sqlite_url).out)
    assert (listed_json["concurrency_per_key"], listed_json["rate_limit_per_key"]) == (2, [3, 0.5])
    assert cli("queues", "set", "api", "--rate", "20/1s", "--url", sqlite_url).code == 0
    stored = queues(sqlite_url)["api"]
    assert (stored.concurrency_per_key, stored.rate_limit_per_key) == (2, (3, 0.5))  # left out: unchanged
    cleared = cli("queues", "set", "api", "--per-key", "none", "--url", sqlite_url)
    assert cleared.out == "queue api set (concurrency 10, priority 50, rate 20/1s; per key: concurrency unlimited, " \
                          "rate 3/500ms)\n"
    assert cli("queues", "set", "api", "--rate-per-key", "none", "--url", sqlite_url).code == 0
    stored = queues(sqlite_url)["api"]
    assert (stored.concurrency_per_key, stored.rate_limit_per_key, stored.rate_limit) == (None, None, (20, 1.0))
    assert cli("queues", "set", "api", "--priority", "4", "--url", sqlite_url).out == (
        "queue api set (concurrency 10, priority 4, rate 20/1s)\n")  # no keys in use: nothing said of them


def test_bad_per_key_limits_are_refused(cli: Cli, sqlite_url: str) -> None:
    cli("queues", "set", "api", "--per-key", "3", "--create", "--url", sqlite_url)
    for option, bad, message in (
        ("--per-key", "0", "argument --per-key: concurrency per key must be between 1 and 100000, got 0"),
        ("--per-key", "-1", "argument --per-key: concurrency per key takes a number of jobs, e.g. 2 (or 'none'), "
                            "got '-1'"),
        ("--per-key", "two", "argument --per-key: concurrency per key takes a number of jobs"),
        ("--per-key", "100001", "argument --per-key: concurrency per key must be between 1 and 100000"),
        ("--rate-per-key", "5", "argument --rate-per-key: rate limit per key takes N/WINDOW"),
        ("--rate-per-key", "0/1s", "argument --rate-per-key: rate limit per key's starts must be between 1"),
        ("--rate-per-key", "5/0s", "argument --rate-per-key: rate limit per key's window must be > 0 seconds"),
    ):
        refused = cli("queues", "set", "api", option, bad, "--url", sqlite_url)
        assert refused.code == 2 and message in refused.err, refused.err
    stored = queues(sqlite_url)["api"]
    assert (stored.concurrency_per_key, stored.rate_limit_per_key) == (3, None)


def test_bad_queue_usage(cli: Cli, sqlite_url: str) -> None:
    nothing = cli("queues", "set", "email", "--url", sqlite_url)
    assert (nothing.code, nothing.err) == (
        2, "aiojobs: error: queues set needs --concurrency, --priority, --rate, --per-key and/or --rate-per-key\n")
    zero = cli("queues", "set", "default", "--concurrency", "0", "--url", sqlite_url)
    assert (zero.code, zero.err) == (2, "aiojobs: error: concurrency must be between 1 and 100000, got 0\n")
    bad_name = cli("queues", "pause", "no way", "--url", sqlite_url)
    assert bad_name.code == 2 and bad_name.err.startswith("aiojobs: error: queue must be")
    missing = cli("queues", "pause", "--url", sqlite_url)
    assert missing.code == 2 and "the following arguments are required: Q" in missing.err


def test_a_queue_nothing_names_is_refused_with_the_closest_names(cli: Cli, sqlite_url: str) -> None:
    enqueue(sqlite_url, ("add", (1, 2), {"queue": "email"}), ("add", (1, 2), {"queue": "reports"}))
    for argv in (("pause", "emial"), ("resume", "emial"), ("set", "emial", "--concurrency", "3")):
        result = cli("queues", *argv, "--url", sqlite_url)
        assert (result.code, result.out) == (2, "")
        assert result.err == ("aiojobs: error: no queue named 'emial' is known (no declared job, schedule, stored "
                              "job or stored queue settings name it); did you mean 'email'? Pass --create to "
                              "create it\n")
    far = cli("queues", "pause", "zzz", "--url", sqlite_url)
    assert "; known queues: default, email, reports. Pass --create" in far.err
    assert set(queues(sqlite_url)) == {"email", "reports"}  # nothing stored
    created = cli("queues", "pause", "zzz", "--create", "--url", sqlite_url)
    assert (created.code, created.out) == (0, "queue zzz paused\n")
    assert queues(sqlite_url)["zzz"].paused


def test_queues_known_to_the_application_need_no_create(cli: Cli, sqlite_url: str) -> None:
    # The test application declares its jobs on the default queue and nothing is stored yet.
    result = cli("queues", "pause", "default", "--app", APP, "--url", sqlite_url)
    assert (result.code, result.out) == (0, "queue default paused\n")
    app_module().engine.configure(queues=["billing"])  # a queue the application declares
    declared = cli("queues", "set", "billing", "--priority", "3", "--app", APP, "--url", sqlite_url)
    assert declared.code == 0, declared.err


def test_work_refuses_a_queue_nothing_names(cli: Cli, sqlite_url: str) -> None:
    for command in ("work", "workoff", "worker"):
        result = cli(command, "--app", APP, "--queues", "default,nosuch", "--url", sqlite_url)
        assert result.code == 2, (command, result.err)
        assert "no queue named 'nosuch' is known" in result.err and "Pass --create" in result.err
    assert set(queues(sqlite_url)) == set()  # not stored by the refused commands
    done = cli("workoff", "--app", APP, "--queues", "nosuch", "--create", "--url", sqlite_url)
    assert done.code == 0, done.err
    assert "nosuch" in queues(sqlite_url)


def test_delete(cli: Cli, sqlite_url: str) -> None:
    (job,) = enqueue(sqlite_url, ("add", (1, 2), {"queue": "email"}))
    cli("queues", "pause", "spare", "--create", "--url", sqlite_url)
    busy = cli("queues", "delete", "email", "--url", sqlite_url)
    assert (busy.code, busy.err) == (1, "aiojobs: error: queue 'email' still holds 1 job(s) (1 waiting); cancel, "
                                        "clear or let them finish and be pruned first\n")
    deleted = cli("queues", "delete", "spare", "--url", sqlite_url)
    assert (deleted.code, deleted.out) == (0, "queue spare deleted\n")
    assert set(queues(sqlite_url)) == {"email"}
    again = cli("queues", "delete", "spare", "--json", "--url", sqlite_url)
    assert (again.code, again.err) == (1, "aiojobs: error: no settings are stored for queue 'spare'; known "
                                          "queues: email.\n")
    typo = cli("queues", "delete", "emial", "--url", sqlite_url)
    assert "did you mean 'email'?" in typo.err
    cli("jobs", "cancel", str(job.id), "--url", sqlite_url)
    cli("clear", "--queue", "email", "--yes", "--url", sqlite_url)
    as_json = cli("queues", "delete", "email", "--json", "--url", sqlite_url)
    assert (as_json.code, json.loads(as_json.out)) == (0, {"name": "email", "deleted": True})
    assert queues(sqlite_url) == {}


def test_bare_queues_lists(cli: Cli, sqlite_url: str) -> None:
    enqueue(sqlite_url, ("add", (1, 2), {}))
    assert cli("queues", "--url", sqlite_url).out == cli("queues", "list", "--url", sqlite_url).out
    assert json.loads(cli("--json", "queues", "--url", sqlite_url).out)[0]["name"] == "default"
