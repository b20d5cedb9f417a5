"""`aiojobs cron list|pause|resume|remove`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from aiojobs_engine import Engine

from ._helpers import Result

Cli = Callable[..., Result]


def add_schedules(url: str) -> None:
    async def go() -> None:
        async with Engine(url) as engine:
            await engine.add_schedule("nightly", "0 3 * * *", "add", args=[1, 2], timezone="Europe/Berlin")
            await engine.add_schedule("often", "*/5 * * * * *", "add", args=[2, 3])

    asyncio.run(go())


def test_cron_list_pause_resume_remove(cli: Cli, sqlite_url: str) -> None:
    assert cli("cron", "list", "--url", sqlite_url).out == "no schedules\n"
    add_schedules(sqlite_url)
    listed = cli("cron", "list", "--url", sqlite_url)
    header, *rows = listed.out.splitlines()
    assert header.split()[:5] == ["SCHEDULE", "EXPRESSION", "TIMEZONE", "JOB", "STATUS"]
    assert rows[0].split()[:2] == ["nightly", "0"] and "Europe/Berlin" in rows[0] and "active" in rows[0]
    as_json = json.loads(cli("cron", "list", "--json", "--url", sqlite_url).out)
    assert [s["name"] for s in as_json] == ["nightly", "often"] and as_json[1]["args"] == [2, 3]
    assert as_json[0]["next_tick"].endswith("+00:00")
    paused = cli("cron", "pause", "often", "--url", sqlite_url)
    assert (paused.code, paused.out) == (0, "schedule often paused\n")
    resumed = cli("cron", "resume", "often", "--json", "--url", sqlite_url)
    assert resumed.code == 0 and json.loads(resumed.out)["paused"] is False
    removed = cli("cron", "remove", "often", "--url", sqlite_url)
    assert (removed.code, removed.out) == (0, "schedule often removed\n")
    missing = cli("cron", "remove", "often", "--url", sqlite_url)
    assert missing.code == 1 and "no schedule named 'often'" in missing.err


def test_bare_cron_lists_the_schedules(cli: Cli, sqlite_url: str) -> None:
    assert cli("cron", "--url", sqlite_url).out == "no schedules\n"
    add_schedules(sqlite_url)
    bare = cli("cron", "--url", sqlite_url)
    assert bare.code == 0, bare.err

    def without_next_tick(lines: str) -> list[list[str]]:  # "often" ticks every 5 s: it may move on
        return [line.split()[:-1] for line in lines.splitlines()]

    assert without_next_tick(bare.out) == without_next_tick(cli("cron", "list", "--url", sqlite_url).out)
    for argv in (("--json", "cron"), ("cron", "--json")):
        as_json = json.loads(cli(*argv, "--url", sqlite_url).out)
        assert [s["name"] for s in as_json] == ["nightly", "often"] and "next_tick" in as_json[0]
    assert cli("cron", "bogus", "--url", sqlite_url).code == 2
