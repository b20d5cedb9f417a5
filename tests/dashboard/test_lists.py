"""What the lists show, in process: search, the error column, times, the parts that refresh live."""

from __future__ import annotations

import re

import httpx
import pytest

from aiojobs_engine import ConfigurationError
from aiojobs_engine.dashboard import dashboard

from ._support import HOSTILE_MESSAGE
from .conftest import BASE, Env


def _ids(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr data-job-id="(\d+)">', html)]


async def test_search_finds_jobs_by_their_arguments_and_meta(env_any: Env) -> None:
    seeded = env_any.seeded
    tagged = await env_any.jobs.add.options(meta={"tenant": "Acme"}).enqueue(7, 8)

    async def found(**params: str) -> list[int]:
        response = await env_any.client.get("/jobs", params=params)
        assert response.status_code == 200, response.text
        return _ids(response.text)

    assert await found(q="user1@EXAMPLE") == [seeded.email[1].id]
    assert await found(q="  acme ") == [tagged.id]  # meta, trimmed, case ignored
    assert await found(q="example.com") == [r.id for r in reversed(seeded.email)]
    assert await found(q="example.com", state="completed", queue="email", limit="1") == [seeded.email[1].id]
    assert await found(q="<script>") == [seeded.hostile.id]
    assert await found(q="nothing like it") == []
    html = (await env_any.client.get("/jobs", params={"q": "example.com", "limit": "1"})).text
    assert 'value="example.com"' in html  # the box keeps the search, and so does the next page's link
    assert f'href="/jobs?q=example.com&amp;limit=1&amp;before_id={seeded.email[1].id}"' in html


async def test_a_search_that_is_too_long_is_a_400_that_says_why(env: Env) -> None:
    response = await env.client.get("/jobs", params={"q": "x" * 201})
    assert response.status_code == 400 and "search must be at most 200 characters, got 201" in response.text


async def test_failed_jobs_show_their_last_error_as_a_column(env: Env) -> None:
    html = (await env.client.get("/jobs", params={"state": "failed"})).text
    assert "<th>Error</th>" in html
    row = html[html.index(f'<tr data-job-id="{env.seeded.failed.id}">'):]
    row = row[: row.index("</tr>")]
    escaped = HOSTILE_MESSAGE.replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;").replace("'", "&#39;")
    assert '<span class="error-name">ValueError</span>' in row
    assert f'<span class="error-text" title="{escaped} plain">{escaped} plain</span>' in row
    # A list with no job that ever failed has no such column.
    assert "<th>Error</th>" not in (await env.client.get("/jobs", params={"state": "completed"})).text


async def test_times_are_written_in_utc_for_the_script_to_convert(env: Env) -> None:
    job = env.seeded.completed[0]
    html = (await env.client.get(f"/jobs/{job.id}")).text
    stamp = f"{job.completed_at:%Y-%m-%d %H:%M:%S} UTC"
    assert (f'<time class="at" datetime="{job.completed_at.isoformat()}" title="{stamp}">{stamp}</time>'
            in html)
    assert f'<time datetime="{job.completed_at.isoformat()}" title="{stamp}">' in html  # "3 s ago"


@pytest.mark.parametrize(("path", "parts"), [
    ("/", ["cards", "chart", "queues"]),
    ("/jobs", ["jobs"]),
    ("/engines", ["engines"]),
])
async def test_pages_mark_the_parts_that_refresh_live(env: Env, path: str, parts: list[str]) -> None:
    html = (await env.client.get(path)).text
    assert re.findall(r'data-live="([\w-]+)"', html) == parts
    assert '<body data-refresh="5000">' in html


async def test_live_refresh_can_be_set_or_turned_off(env: Env) -> None:
    for interval, expected in ((0, "<body>"), (0.25, '<body data-refresh="250">')):
        app = dashboard(env.engine, refresh_interval=interval)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
            html = (await client.get("/")).text
        assert expected in html
        assert ('id="auto-refresh"' in html) is bool(interval)
    for bad in (-1, 0.01, 7200, "5", True, float("nan")):
        with pytest.raises(ConfigurationError, match=r"refresh_interval must be 0 \(off\) or between 0\.1 and 3600"):
            dashboard(env.engine, refresh_interval=bad)  # type: ignore[arg-type]
