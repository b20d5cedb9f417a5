"""The pages, in process: what they show, filters, paging, search, errors."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

import httpx
import pytest

from aiojobs_engine import JobState
from aiojobs_engine.dashboard import dashboard
from tests._waiting import eventually

from ._support import make_jobs
from .conftest import Env


def _ids(html: str) -> list[int]:
    """The job ids of a jobs table, in page order."""
    return [int(n) for n in re.findall(r'<tr data-job-id="(\d+)">', html)]


async def test_overview_shows_each_queue_with_its_counts_settings_and_chart(env_any: Env) -> None:
    await env_any.engine.set_queue("email", concurrency=3, priority=5)
    await env_any.engine.pause_queue("email")
    html = (await env_any.client.get("/")).text
    email = html[html.index('data-queue="email"'):]
    email = email[: email.index("</tr>")]
    assert "paused" in email and 'value="3"' in email and ">5<" in email
    assert 'class="num count-completed"><a href="/jobs?queue=email&amp;state=completed">2</a>' in email
    default = html[html.index('data-queue="default"'):]
    default = default[: default.index("</tr>")]
    assert "/jobs?queue=default&amp;state=failed\">2</a>" in default
    assert "/jobs?queue=default&amp;state=waiting\">1</a>" in default
    # Charts: one for all queues, one per queue, each with the hour's totals.
    assert html.count("<svg class=\"chart") == 3
    assert 'aria-label="all queues: 5 completed, 2 failed in the last hour"' in html
    assert 'aria-label="queue email: 2 completed, 0 failed in the last hour"' in html
    assert re.search(r'<rect class="ok" x="[\d.]+" y="[\d.]+" width="[\d.]+" height="[\d.]+"', html)


async def test_jobs_are_listed_newest_first_and_filtered(env_any: Env) -> None:
    seeded = env_any.seeded
    everything = _ids((await env_any.client.get("/jobs")).text)
    assert everything == sorted(everything, reverse=True) and len(everything) == 8
    failed = _ids((await env_any.client.get("/jobs", params={"state": "failed"})).text)
    assert failed == [seeded.hostile.id, seeded.failed.id]
    email = _ids((await env_any.client.get("/jobs", params={"queue": "email"})).text)
    assert email == [r.id for r in reversed(seeded.email)]
    adds = _ids((await env_any.client.get("/jobs", params={"name": "add", "state": "completed"})).text)
    assert adds == [r.id for r in reversed(seeded.completed)]
    none = await env_any.client.get("/jobs", params={"queue": "email", "state": "failed"})
    assert _ids(none.text) == [] and "No jobs match." in none.text


async def test_jobs_are_paged_by_keyset(env: Env) -> None:
    expected = _ids((await env.client.get("/jobs")).text)
    seen: list[int] = []
    path = "/jobs?limit=3"
    while True:
        html = (await env.client.get(path)).text
        seen += _ids(html)
        older = re.search(r'<a class="btn" rel="next" href="([^"]+)"', html)
        if older is None:
            break
        path = older.group(1).replace("&amp;", "&")
        assert "before_id=" in path and "limit=3" in path
    assert seen == expected
    assert "No older jobs." in (await env.client.get(f"/jobs?before_id={min(expected)}")).text


async def test_search_by_id_goes_to_the_job(env: Env) -> None:
    response = await env.client.get("/jobs", params={"id": f"#{env.seeded.failed.id}"})
    assert response.status_code == 303 and response.headers["location"] == f"/jobs/{env.seeded.failed.id}"
    assert (await env.client.get("/jobs", params={"id": "abc"})).status_code == 400


async def test_job_page_shows_arguments_result_timeline_and_every_error(env: Env) -> None:
    completed = env.seeded.completed[1]
    html = (await env.client.get(f"/jobs/{completed.id}")).text
    assert '<pre class="json" data-field="args">[\n  1,\n  1\n]</pre>' in html
    assert '<pre class="json" data-field="result">2</pre>' in html
    for label in ("enqueued", "available from", "claimed by an engine", "last attempt started", "completed"):
        assert f'<span class="moment-label">{label}</span>' in html
    failed = (await env.client.get(f"/jobs/{env.seeded.failed.id}")).text
    assert "ValueError" in failed and "Traceback (most recent call last)" in failed
    assert "attempt 1 failed: ValueError" in failed and "failed for good" in failed
    assert "Errors <span class=\"muted\">(1)</span>" in failed


async def test_job_page_shows_the_concurrency_key_of_a_keyed_job(env: Env) -> None:
    keyed = await env.jobs.add.options(concurrency_key="tenant-<7>").enqueue(1, 2)
    html = (await env.client.get(f"/jobs/{keyed.id}")).text
    assert "<dt>Concurrency key</dt><dd><code>tenant-&lt;7&gt;</code></dd>" in html
    assert "Concurrency key" not in (await env.client.get(f"/jobs/{env.seeded.waiting.id}")).text


async def test_unknown_and_malformed_requests_get_error_pages(env: Env) -> None:
    missing = await env.client.get("/jobs/999999")
    assert missing.status_code == 404 and "There is no job 999999" in missing.text
    assert (await env.client.get("/jobs/abc")).status_code == 400
    assert (await env.client.get("/jobs", params={"state": "lost"})).status_code == 400
    assert (await env.client.get("/jobs", params={"before_id": "0"})).status_code == 400
    assert (await env.client.get("/jobs", params={"limit": "100000"})).status_code == 400
    bad_name = await env.client.get("/jobs", params={"queue": "no spaces"})
    assert bad_name.status_code == 400 and "queue must be" in bad_name.text
    assert (await env.client.get("/nowhere")).status_code == 404


async def test_schedules_show_their_next_run(sqlite_url: str) -> None:
    jobs = make_jobs(sqlite_url)
    jobs.engine.cron("*/15 * * * *", name="refresh", args=[1, 2])(jobs.add)
    async with jobs.engine:
        app = dashboard(jobs.engine)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            html = (await client.get("/schedules")).text
        [schedule] = await jobs.engine.list_schedules()
    assert schedule.next_tick is not None
    assert 'data-schedule="refresh"' in html and "<code>*/15 * * * *</code>" in html
    assert f"{schedule.next_tick:%Y-%m-%d %H:%M:%S} UTC" in html


async def _running(engine, job_id: int) -> bool:
    current = await engine.get_job(job_id)
    return current is not None and current.state is JobState.RUNNING


async def test_engines_show_their_heartbeat_and_the_jobs_they_run(sqlite_url: str) -> None:
    jobs = make_jobs(sqlite_url)
    jobs.gate = asyncio.Event()
    async with jobs.engine.running():
        record = await jobs.send_email.enqueue("slow@example.com")
        await eventually(lambda: _running(jobs.engine, record.id))
        [engine] = await jobs.engine.list_engines()
        app = dashboard(jobs.engine)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            html = (await client.get("/engines")).text
            overview = (await client.get("/")).text
        jobs.gate.set()
    section = html[html.index(f'data-engine="{engine.id}"'):]
    assert "badge-active\">alive" in section
    assert f'<tr data-job-id="{record.id}">' in section and "send_email" in section
    assert '<span class="card-n">1</span><span class="card-label">engines alive' in overview
    assert datetime.now(UTC) >= engine.heartbeat_at


@pytest.mark.parametrize("path", ["/", "/jobs", "/schedules", "/engines"])
async def test_pages_have_no_inline_script_or_style(env: Env, path: str) -> None:
    html = (await env.client.get(path)).text
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts and all(" src=" in tag for tag in scripts)
    assert all(not body.strip() for body in re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.DOTALL))
    # No event-handler attribute in any tag. Attribute values are left out first: the hostile
    # error message is in one (a title), escaped, its own quotes included.
    tags = re.sub(r'"[^"]*"', '""', html)
    assert re.search(r"<[^>]*\son[a-z]+=", tags) is None
    assert " style=" not in html and "<style" not in html
