"""The dashboard in a real browser: headless Chromium driven by Playwright.

Each test serves the dashboard with uvicorn on 127.0.0.1 (a real engine, a real database),
clicks through it as a person would, checks the database, and saves screenshots to its
tmp_path. Skipped, with the reason, where Chromium or Playwright is missing — except in CI
(AIOJOBS_TEST_REQUIRE_BROWSER=1), where that fails. The tests and the server share the
module's event loop with the browser (Playwright's async API).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from aiojobs_engine import JobState

from ._browser import Site, _site
from ._support import HOSTILE_ARG, HOSTILE_MESSAGE

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(loop_scope="module")
async def site(browser: Any, sqlite_url: str, shots: Path) -> AsyncIterator[Site]:
    async with _site(browser, sqlite_url, shots) as value:
        yield value
    assert value.errors == [], value.errors  # no script error, no CSP violation, on any page


async def test_pages_render_and_link_together(site: Site) -> None:
    page = site.page
    await site.goto("/")
    assert await page.locator("h1").inner_text() == "Overview"
    assert await page.locator("tr[data-queue]").count() == 2
    assert await page.locator("svg.chart rect.ok").count() >= 3  # bars drawn for the last hour
    assert await page.locator("label.refresh").is_visible()  # the dashboard's own script ran under the CSP
    await site.shot("overview")
    await page.get_by_role("link", name="Jobs", exact=True).click()
    await page.wait_for_url(re.compile(r"/jobs$"))
    assert len(await site.rows()) == 8
    await site.shot("jobs")
    await page.locator(f'tr[data-job-id="{site.seeded.failed.id}"] td a').first.click()
    await page.wait_for_url(re.compile(rf"/jobs/{site.seeded.failed.id}$"))
    assert "ValueError" in await page.locator("details.error summary").inner_text()
    assert "Traceback (most recent call last)" in await page.locator("pre.traceback").inner_text()
    await site.shot("job-failed")
    await page.get_by_role("link", name="Schedules").click()
    await page.wait_for_url(re.compile(r"/schedules$"))
    assert await page.locator("h1").inner_text() == "Schedules"
    await page.get_by_role("link", name="Engines").click()
    await page.wait_for_url(re.compile(r"/engines$"))
    assert await page.locator("h1").inner_text() == "Engines"
    await site.shot("engines")


async def test_filters_search_and_paging(site: Site) -> None:
    page, seeded = site.page, site.seeded
    await site.goto("/jobs")
    await page.select_option("select[name=state]", "failed")
    await page.get_by_role("button", name="Filter").click()
    await page.wait_for_url(re.compile(r"state=failed"))
    assert await site.rows() == [seeded.hostile.id, seeded.failed.id]
    assert set(await page.locator("tr[data-job-id] .state").all_inner_texts()) == {"failed"}
    await page.select_option("select[name=state]", "")
    await page.select_option("select[name=queue]", "email")
    await page.get_by_role("button", name="Filter").click()
    await page.wait_for_url(re.compile(r"queue=email"))
    assert await site.rows() == [r.id for r in reversed(seeded.email)]
    await site.shot("jobs-email")
    await site.goto("/jobs")
    await page.fill("input[name=name]", "add")
    await page.get_by_role("button", name="Filter").click()
    await page.wait_for_url(re.compile(r"name=add"))
    assert len(await site.rows()) == 4
    await page.fill("input[name=id]", str(seeded.email[0].id))
    await page.get_by_role("button", name="Go").click()
    await page.wait_for_url(re.compile(rf"/jobs/{seeded.email[0].id}$"))
    assert "user0@example.com" in await page.locator('pre[data-field="args"]').inner_text()
    await site.goto("/jobs?limit=3")
    seen = await site.rows()
    while await page.get_by_role("link", name="Older »").count():
        await page.get_by_role("link", name="Older »").click()
        await page.wait_for_load_state()
        seen += await site.rows()
    assert seen == sorted(seen, reverse=True) and len(seen) == 8


async def test_retry_cancel_and_delete_act_on_the_database(site: Site) -> None:
    page, seeded = site.page, site.seeded
    await site.goto(f"/jobs/{seeded.failed.id}")
    await page.get_by_role("button", name="Retry now").click()
    await page.wait_for_url(re.compile(r"notice=retried"))
    assert await page.locator(".notice").inner_text() == f"Job {seeded.failed.id} will run again now."
    assert await site.state(seeded.failed.id) is JobState.WAITING

    await site.goto(f"/jobs/{seeded.waiting.id}")
    site.answer_dialog(False)
    await page.get_by_role("button", name="Cancel").click()  # dismissed: nothing is sent
    await page.wait_for_timeout(200)
    assert page.url.endswith(f"/jobs/{seeded.waiting.id}")
    assert await site.state(seeded.waiting.id) is JobState.WAITING
    site.answer_dialog(True)
    await page.get_by_role("button", name="Cancel").click()
    await page.wait_for_url(re.compile(r"notice=canceled"))
    assert await site.state(seeded.waiting.id) is JobState.CANCELED
    await site.shot("job-canceled")

    done = seeded.completed[0]
    await site.goto(f"/jobs/{done.id}")
    site.answer_dialog(True)
    await page.get_by_role("button", name="Delete").click()
    await page.wait_for_url(re.compile(r"/jobs\?notice=deleted"))
    assert await site.state(done.id) is None
    assert done.id not in await site.rows()


async def test_pause_resume_and_concurrency_of_a_queue(site: Site) -> None:
    page = site.page
    email = 'tr[data-queue="email"]'
    await site.goto("/")
    await page.locator(email).get_by_role("button", name="Pause").click()
    await page.wait_for_url(re.compile(r"notice=paused"))
    assert (await site.queue("email")).paused
    assert await page.locator(f"{email} .badge-paused").is_visible()
    await site.shot("queue-paused")
    await page.locator(email).get_by_role("button", name="Resume").click()
    await page.wait_for_url(re.compile(r"notice=resumed"))
    assert not (await site.queue("email")).paused
    await page.fill(f"{email} input[name=concurrency]", "4")
    await page.locator(f"{email} form.concurrency").get_by_role("button", name="set").click()
    await page.wait_for_url(re.compile(r"notice=concurrency"))
    assert (await site.queue("email")).concurrency == 4
    assert await page.locator(f"{email} input[name=concurrency]").input_value() == "4"
    await page.fill(f"{email} input[name=rate]", "20/1s")
    await page.locator(f"{email} form.rate").get_by_role("button", name="set").click()
    await page.wait_for_url(re.compile(r"notice=rate"))
    assert (await site.queue("email")).rate_limit == (20, 1.0)
    assert await page.locator(f"{email} input[name=rate]").input_value() == "20/1s"
    await site.shot("queue-rate-limit")
    await page.fill(f"{email} input[name=per_key]", "2")
    await page.fill(f"{email} input[name=rate_per_key]", "5/1s")
    await page.locator(f"{email} form.per-key").get_by_role("button", name="set").click()
    await page.wait_for_url(re.compile(r"notice=per-key"))
    stored = await site.queue("email")
    assert (stored.concurrency_per_key, stored.rate_limit_per_key) == (2, (5, 1.0))
    assert await page.locator(f"{email} input[name=per_key]").input_value() == "2"
    assert await page.locator(f"{email} input[name=rate_per_key]").input_value() == "5/1s"
    await site.shot("queue-per-key-limits")


async def test_retry_all_failed_asks_for_confirmation(site: Site) -> None:
    page, seeded = site.page, site.seeded
    await site.goto("/")
    await page.locator('tr[data-queue="default"]').get_by_role("link", name="Retry failed…").click()
    await page.wait_for_url(re.compile(r"/queues/default/failed/retry$"))
    assert await page.locator(".confirm strong").inner_text() == "2"
    await site.shot("confirm-retry-failed")
    assert await site.state(seeded.failed.id) is JobState.FAILED  # asking changes nothing
    await page.get_by_role("button", name="Yes, retry 2 jobs").click()
    await page.wait_for_url(re.compile(r"notice=failed-retried"))
    assert await page.locator(".notice").inner_text() == "2 failed jobs will run again now."
    assert await site.state(seeded.failed.id) is JobState.WAITING
    assert await site.state(seeded.hostile.id) is JobState.WAITING


async def test_delete_all_failed_after_confirmation(site: Site) -> None:
    page = site.page
    default = page.locator('tr[data-queue="default"]')
    await site.goto("/")
    await default.get_by_role("link", name="Delete failed…").click()
    await page.get_by_role("link", name="Back").click()
    await page.wait_for_url(re.compile(r"/$"))
    assert await site.state(site.seeded.failed.id) is JobState.FAILED
    await default.get_by_role("link", name="Delete failed…").click()
    await page.get_by_role("button", name="Yes, delete 2 jobs").click()
    await page.wait_for_url(re.compile(r"notice=failed-deleted"))
    assert await site.state(site.seeded.failed.id) is None
    assert await site.state(site.seeded.hostile.id) is None


async def test_a_hostile_argument_is_shown_and_never_runs(site: Site) -> None:
    page, hostile = site.page, site.seeded.hostile
    for path in (f"/jobs/{hostile.id}", "/jobs", "/jobs?state=failed"):
        await site.goto(path)
        assert await page.evaluate("() => window.__pwned") is None, path
        assert await page.locator("main img").count() == 0, path
    await site.goto(f"/jobs/{hostile.id}")
    assert HOSTILE_ARG in await page.locator('pre[data-field="args"]').inner_text()
    assert HOSTILE_MESSAGE in await page.locator("details.error summary").inner_text()
    assert HOSTILE_ARG in await page.locator("pre.traceback").inner_text()
    await site.shot("hostile-job")
    # The browser enforces the policy too: an inline script added to the page does not run.
    ran = await page.evaluate("""() => {
        const script = document.createElement("script");
        script.textContent = "window.__inline = 1";
        document.body.appendChild(script);
        return window.__inline === 1;
    }""")
    assert ran is False
    await page.wait_for_timeout(100)
    assert any("Content Security Policy" in e for e in site.errors), site.errors
    site.errors.clear()


async def test_an_action_without_the_token_is_refused(site: Site) -> None:
    page, seeded = site.page, site.seeded
    await site.goto(f"/jobs/{seeded.failed.id}")
    await page.evaluate("() => document.querySelectorAll('input[name=csrf_token]').forEach(i => i.value = 'forged')")
    await page.get_by_role("button", name="Retry now").click()
    await page.wait_for_url(re.compile(r"/retry$"))
    assert await page.locator("h1").inner_text() == "403"
    assert "CSRF" in await page.locator(".error-message").inner_text()
    await site.shot("csrf-refused")
    assert await site.state(seeded.failed.id) is JobState.FAILED
    # What another site can make: a request carrying the browser's cookie, but no token.
    response = await site.context.request.post(f"{site.live.url}/jobs/{seeded.failed.id}/retry",
                                               form={"next": "/"})
    assert response.status == 403
    assert await site.state(seeded.failed.id) is JobState.FAILED
    site.errors.clear()  # the browser logs the 403 as a console error


async def test_read_only_shows_everything_and_allows_nothing(browser: Any, sqlite_url: str, shots: Path) -> None:
    async with _site(browser, sqlite_url, shots, read_only=True) as site:
        page, seeded = site.page, site.seeded
        for path in ("/", "/jobs", f"/jobs/{seeded.failed.id}", f"/jobs/{seeded.waiting.id}"):
            await site.goto(path)
            assert await page.locator("form[method=post]").count() == 0, path
            assert await page.locator("button", has_text=re.compile("Retry|Cancel|Delete|Pause")).count() == 0, path
            assert await page.locator(".badge-readonly").is_visible()
        await site.goto("/")
        await site.shot("read-only")
        token = next(c["value"] for c in await site.context.cookies() if c["name"] == "aiojobs_csrf")
        response = await site.context.request.post(f"{site.live.url}/jobs/{seeded.failed.id}/retry",
                                                   form={"csrf_token": token})
        assert response.status == 403
        assert await site.state(seeded.failed.id) is JobState.FAILED


async def test_basic_auth_keeps_strangers_out(browser: Any, sqlite_url: str, shots: Path) -> None:
    async with _site(browser, sqlite_url, shots, basic_auth=("ops", "pw")) as site:
        stranger = await site.context.request.get(f"{site.live.url}/")
        assert stranger.status == 401 and stranger.headers["www-authenticate"].startswith("Basic ")
        wrong = await site.context.request.get(f"{site.live.url}/", headers={"Authorization": "Basic b3BzOm5v"})
        assert wrong.status == 401
        known = await browser.new_context(http_credentials={"username": "ops", "password": "pw"})
        try:
            page = await known.new_page()
            assert (await page.goto(site.live.url + "/")).status == 200
            assert await page.locator("h1").inner_text() == "Overview"
            await page.screenshot(path=str(shots / "basic-auth.png"))
        finally:
            await known.close()


async def test_clicking_through_on_each_backend(browser: Any, db_url: str, shots: Path) -> None:
    async with _site(browser, db_url, shots) as site:
        page, seeded = site.page, site.seeded
        await site.goto("/")
        await page.locator('tr[data-queue="default"] td.count-failed a').click()
        await page.wait_for_url(re.compile(r"state=failed"))
        assert await site.rows() == [seeded.hostile.id, seeded.failed.id]
        await page.locator("tr[data-job-id]").first.get_by_role("button", name="Retry").click()
        await page.wait_for_url(re.compile(r"notice=retried"))
        assert await site.state(seeded.hostile.id) is JobState.WAITING
        await site.goto("/")
        await page.locator('tr[data-queue="email"]').get_by_role("button", name="Pause").click()
        await page.wait_for_url(re.compile(r"notice=paused"))
        assert (await site.queue("email")).paused
        await site.shot(f"overview-{db_url.partition(':')[0]}")
        assert site.errors == []
