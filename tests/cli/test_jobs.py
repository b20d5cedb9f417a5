"""`aiojobs jobs list|show|retry|cancel|snooze`."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from aiojobs_engine import Engine, JobState

from ._helpers import Finished, Result, enqueue, get, with_engine

Cli = Callable[..., Result]

JOB_FIELDS = {
    "id", "queue", "name", "args", "kwargs", "constructor_args", "state", "priority", "attempt", "max_attempts",
    "timeout", "inserted_at", "available_at", "claimed_at", "attempted_at", "completed_at", "failed_at",
    "canceled_at", "claimed_by", "result", "errors", "unique_key", "rescheduled_from", "meta", "concurrency_key",
    "cancel_requested", "retry",
}


def test_list_prints_a_table_newest_first(cli: Cli, sqlite_url: str) -> None:
    first, second = enqueue(sqlite_url, ("add", (1, 2), {}), ("add", (3, 4), {"queue": "email", "priority": 7}))
    result = cli("jobs", "list", "--url", sqlite_url)
    assert result.code == 0, result.err
    header, *rows = result.out.splitlines()
    assert header.split() == ["ID", "QUEUE", "NAME", "STATE", "ATTEMPT", "PRIORITY", "INSERTED", "AVAILABLE"]
    assert [row.split()[:6] for row in rows] == [
        [str(second.id), "email", "add", "waiting", "0/5", "7"],
        [str(first.id), "default", "add", "waiting", "0/5", "50"],
    ]
    assert rows[0].split()[6].endswith("Z") and "T" in rows[0].split()[6]
    # columns are aligned: every row as long as the header's last column start
    assert len({line.index(line.split()[6]) for line in rows}) == 1


def test_list_json_gives_every_field(cli: Cli, sqlite_url: str) -> None:
    (record,) = enqueue(sqlite_url, ("add", (1, 2), {"meta": {"tag": "x"}}))
    result = cli("jobs", "list", "--json", "--url", sqlite_url)
    assert result.code == 0, result.err
    (item,) = json.loads(result.out)
    assert set(item) == JOB_FIELDS
    assert item["id"] == record.id and item["args"] == [1, 2] and item["state"] == "waiting"
    assert item["meta"] == {"tag": "x"} and item["claimed_at"] is None
    assert item["inserted_at"] == record.inserted_at.isoformat() and item["inserted_at"].endswith("+00:00")


def test_list_filters(cli: Cli, sqlite_url: str) -> None:
    a, b, c = enqueue(sqlite_url, ("add", (1, 1), {}), ("add", (2, 2), {"queue": "email"}), ("slow", (0,), {}))
    cli("jobs", "cancel", str(c.id), "--url", sqlite_url)

    def ids(*options: str) -> list[int]:
        result = cli("--json", "--url", sqlite_url, "jobs", "list", *options)  # common options before the command
        assert result.code == 0, result.err
        return [item["id"] for item in json.loads(result.out)]

    assert ids() == [c.id, b.id, a.id]
    assert ids("--queue", "email") == [b.id]
    assert ids("--name", "slow") == [c.id]
    assert ids("--state", "canceled") == [c.id]
    assert ids("--state", "waiting,canceled", "--queue", "default") == [c.id, a.id]
    assert ids("--state", "waiting", "--state", "canceled", "--limit", "1") == [c.id]


def test_list_empty_and_bad_filters(cli: Cli, sqlite_url: str) -> None:
    assert cli("jobs", "list", "--url", sqlite_url).out == "no jobs\n"
    assert cli("jobs", "list", "--json", "--url", sqlite_url).out == "[]\n"
    bad_state = cli("jobs", "list", "--state", "done", "--url", sqlite_url)
    assert bad_state.code == 2 and "invalid state 'done'" in bad_state.err
    bad_limit = cli("jobs", "list", "--limit", "0", "--url", sqlite_url)
    assert bad_limit.code == 2
    assert bad_limit.err == "aiojobs: error: limit must be between 1 and 10000, got 0\n"
    bad_queue = cli("jobs", "list", "--queue", "no way", "--url", sqlite_url)
    assert bad_queue.code == 2 and bad_queue.err.startswith("aiojobs: error: queue must be")


def test_show(cli: Cli, sqlite_url: str) -> None:
    (record,) = enqueue(sqlite_url, ("add", (1, 2), {}))
    human = cli("jobs", "show", str(record.id), "--url", sqlite_url)
    assert human.code == 0, human.err
    lines = dict(line.split(":", 1) for line in human.out.splitlines())
    assert set(lines) == JOB_FIELDS - {"max_attempts"}  # shown as "attempt: N of M"
    assert lines["name"].strip() == "add" and lines["args"].strip() == "[1, 2]"
    assert lines["attempt"].strip() == "0 of 5"
    as_json = json.loads(cli("jobs", "show", str(record.id), "--json", "--url", sqlite_url).out)
    assert set(as_json) == JOB_FIELDS and as_json["id"] == record.id


def test_show_gives_the_concurrency_key(cli: Cli, sqlite_url: str) -> None:
    keyed, plain = enqueue(sqlite_url, ("add", (1, 2), {"concurrency_key": "tenant-7"}), ("add", (3, 4), {}))

    def shown(job_id: int) -> tuple[str, object]:
        human = cli("jobs", "show", str(job_id), "--url", sqlite_url).out
        lines = dict(line.split(":", 1) for line in human.splitlines())
        as_json = json.loads(cli("jobs", "show", str(job_id), "--json", "--url", sqlite_url).out)
        return lines["concurrency_key"].strip(), as_json["concurrency_key"]

    assert shown(keyed.id) == ("tenant-7", "tenant-7")
    assert shown(plain.id) == ("-", None)


def test_show_a_failed_job_with_its_error(cli: Cli, finished: Finished) -> None:
    result = cli("jobs", "show", str(finished.failed), "--url", finished.url)
    assert "state:" in result.out and "failed" in result.out
    assert "attempt 1 at " in result.out and "ValueError: boom on purpose" in result.out
    assert "latest traceback:" in result.out
    (error,) = json.loads(cli("jobs", "show", str(finished.failed), "--json", "--url", finished.url).out)["errors"]
    assert error["name"] == "ValueError" and error["attempted_at"].endswith("+00:00")


def test_unknown_or_invalid_ids(cli: Cli, sqlite_url: str) -> None:
    for action in ("show", "retry", "cancel"):
        missing = cli("jobs", action, "999", "--url", sqlite_url)
        assert (missing.code, missing.err) == (1, "aiojobs: error: no job with id 999\n")
        zero = cli("jobs", action, "0", "--url", sqlite_url)
        assert zero.code == 2 and zero.err == "aiojobs: error: job id must be >= 1, got 0\n"
        word = cli("jobs", action, "abc", "--url", sqlite_url)
        assert word.code == 2 and "invalid int value: 'abc'" in word.err


def test_retry(cli: Cli, finished: Finished) -> None:
    url = finished.url
    result = cli("jobs", "retry", str(finished.failed), "--url", url)
    assert result.code == 0, result.err
    assert result.out == f"job {finished.failed} (boom) is waiting to run again (attempt 2 of 2)\n"
    assert get(url, finished.failed).state is JobState.WAITING
    refused = cli("jobs", "retry", str(finished.delayed), "--url", url)
    assert refused.code == 1
    assert refused.err == (f"aiojobs: error: job {finished.delayed} is waiting; "
                           "only failed, canceled or completed jobs can be retried\n")
    as_json = json.loads(cli("jobs", "retry", str(finished.completed), "--json", "--url", url).out)
    assert as_json["state"] == "waiting" and as_json["completed_at"] is None


def test_cancel(cli: Cli, finished: Finished) -> None:
    url = finished.url
    result = cli("jobs", "cancel", str(finished.delayed), "--url", url)
    assert (result.code, result.out) == (0, f"job {finished.delayed} (add) is canceled\n")
    assert get(url, finished.delayed).state is JobState.CANCELED
    again = json.loads(cli("jobs", "cancel", str(finished.delayed), "--json", "--url", url).out)
    assert again["state"] == "canceled"
    done = cli("jobs", "cancel", str(finished.completed), "--url", url)
    assert done.code == 1
    assert done.err == f"aiojobs: error: job {finished.completed} is already completed; there is nothing to cancel\n"


def test_retry_of_a_unique_job_whose_key_is_held_is_a_readable_failure(cli: Cli, sqlite_url: str) -> None:
    async def go(engine: Engine) -> tuple[int, int]:
        failed = await engine.options(unique=True).enqueue("boom")
        assert failed is not None
        await engine.workoff()
        holder = await engine.options(unique=True).enqueue("boom")
        assert holder is not None and holder.id != failed.id
        return failed.id, holder.id

    failed, holder = with_engine(sqlite_url, go)
    result = cli("jobs", "retry", str(failed), "--url", sqlite_url)
    assert result.code == 1 and result.out == ""
    assert result.err.startswith(f"aiojobs: error: job {failed} cannot be retried: job {holder} (waiting) holds "
                                 "its unique key 'boom:")
    assert result.err.endswith(f"; cancel job {holder}, or retry once it has finished\n")
    assert "Traceback" not in result.err and "UNIQUE" not in result.err
    assert get(sqlite_url, failed).state is JobState.FAILED


def test_snooze(cli: Cli, finished: Finished) -> None:
    url = finished.url
    before = datetime.now(UTC)
    result = cli("jobs", "snooze", str(finished.delayed), "--delay", "7200", "--url", url)
    assert result.code == 0, result.err
    record = get(url, finished.delayed)
    assert record.state is JobState.SNOOZED and record.available_at >= before + timedelta(seconds=7199)
    until = record.available_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert result.out == f"job {finished.delayed} (add) is snoozed until {until}\n"
    as_json = json.loads(cli("jobs", "snooze", str(finished.delayed), "--delay", "0", "--json", "--url", url).out)
    assert as_json["id"] == finished.delayed and as_json["state"] == "snoozed" and set(as_json) == JOB_FIELDS
    done = cli("jobs", "snooze", str(finished.completed), "--delay", "60", "--url", url)
    assert done.code == 1
    assert done.err == (f"aiojobs: error: job {finished.completed} is completed; only waiting or snoozed jobs "
                        "can be snoozed (retry_job runs a finished job again)\n")
    missing = cli("jobs", "snooze", "999", "--delay", "60", "--url", url)
    assert (missing.code, missing.err) == (1, "aiojobs: error: no job with id 999\n")
    negative = cli("jobs", "snooze", str(finished.delayed), "--delay", "-1", "--url", url)
    assert negative.code == 2 and "snooze delay must be >= 0 seconds" in negative.err
    assert cli("jobs", "snooze", str(finished.delayed), "--url", url).code == 2  # --delay is required
