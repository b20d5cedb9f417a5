"""Working in the dashboard in a real browser: search, errors, ticking jobs, live refresh, times, a phone.

Headless Chromium through Playwright against uvicorn and a real SQLite file, as in
test_browser.py (and skipped, or failed in CI, the same way). Nothing waits on the clock:
Playwright's expectations retry until they hold, and the page's live refresh counts its
polls and pauses on <html> (data-live-polls, data-live-skips), so a test that must show
something did *not* change waits for the page to have polled instead of sleeping.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import expect

from aiojobs_engine import JobState
from tests._waiting import eventually

from ._browser import Site, _site
from ._support import HOSTILE_MESSAGE

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

LIVE = 0.2  # seconds between live refreshes in these tests: many polls, quickly


@pytest_asyncio.fixture(loop_scope="module")
async def site(browser: Any, sqlite_url: str, shots: Path) -> AsyncIterator[Site]:
    async with _site(browser, sqlite_url, shots, refresh_interval=LIVE) as value:
        yield value
    assert value.errors == [], value.errors


async def _polled(site: Site, attribute: str, more: int) -> None:
    """Until the page's live refresh has counted ``more`` further polls (or pauses)."""
    before = int(await site.page.evaluate(f"() => document.documentElement.getAttribute('{attribute}') || '0'"))
    await site.page.wait_for_function(
        f"() => Number(document.documentElement.getAttribute('{attribute}') || '0') >= {before + more}")


async def test_search_by_arguments_and_the_error_column(site: Site) -> None:
    page, seeded = site.page, site.seeded
    await site.goto("/jobs")
    await page.fill("input[name=q]", "user1@")
    await page.get_by_role("button", name="Filter").click()
    await page.wait_for_url(re.compile(r"q=user1%40"))
    assert await site.rows() == [seeded.email[1].id]
    await site.shot("search")
    await site.goto("/jobs?state=failed")
    cells = page.locator("td.error-cell")
    await expect(cells).to_have_count(2)
    for text in await cells.all_inner_texts():
        assert text.startswith("ValueError ") and HOSTILE_MESSAGE in text
    assert await page.evaluate("() => window.__pwned") is None
    await site.shot("failed-with-errors")


async def test_tick_jobs_then_retry_or_delete_them(site: Site) -> None:
    page, seeded = site.page, site.seeded
    await site.goto("/jobs?state=failed")
    retry = page.get_by_role("button", name="Retry selected")
    await expect(retry).to_be_disabled()  # nothing ticked yet
    await page.get_by_label("select every job on this page").check()
    await expect(page.locator(".selection-count")).to_have_text("2 selected:")
    await expect(page.locator('input[form="selection"]:checked')).to_have_count(2)
    await site.shot("selected")
    await retry.click()
    await page.wait_for_url(re.compile(r"notice=selection"))
    await expect(page.locator(".outcome")).to_have_text(
        f"Will run again now: 2 jobs: {seeded.hostile.id}, {seeded.failed.id}.")
    assert await site.state(seeded.failed.id) is JobState.WAITING
    assert await site.state(seeded.hostile.id) is JobState.WAITING

    done = seeded.completed
    await site.goto("/jobs?state=completed")
    for job in done[:2]:
        await page.get_by_label(f"select job {job.id}", exact=True).check()
    asked = asyncio.get_running_loop().create_future()

    async def dismiss(dialog: Any) -> None:
        await dialog.dismiss()
        asked.set_result(dialog.message)

    page.once("dialog", dismiss)
    await page.get_by_role("button", name="Delete selected").click()
    assert await asked == "Delete the selected jobs for good?"
    assert await page.evaluate("() => location.search") == "?state=completed"  # dismissed: nothing sent
    assert await site.state(done[0].id) is JobState.COMPLETED
    site.answer_dialog(True)
    await page.get_by_role("button", name="Delete selected").click()
    await page.wait_for_url(re.compile(r"notice=selection&action=delete"))
    await expect(page.locator(".outcome")).to_have_text(f"Deleted: 2 jobs: {done[1].id}, {done[0].id}.")
    assert await site.state(done[0].id) is None and await site.state(done[1].id) is None
    assert await site.rows() == [r.id for r in reversed(seeded.email)] + [done[2].id]
    await site.shot("deleted")


async def test_cancel_a_running_job_from_the_list(site: Site) -> None:
    page, jobs = site.page, site.jobs
    jobs.gate = asyncio.Event()  # never set: the job runs until it is stopped
    async with jobs.engine.running():
        record = await jobs.send_email.enqueue("slow@example.com")
        await eventually(lambda: _is(site, record.id, JobState.RUNNING))
        await site.goto("/jobs?state=running")
        row = page.locator(f'tr[data-job-id="{record.id}"]')
        site.answer_dialog(True)
        await row.get_by_role("button", name="Cancel").click()
        await page.wait_for_url(re.compile(r"notice=(cancel-requested|canceled)"))
        await eventually(lambda: _is(site, record.id, JobState.CANCELED))
        await site.goto("/jobs?state=canceled")
        await expect(page.locator(f'tr[data-job-id="{record.id}"] .state')).to_have_text("canceled")
        await site.shot("canceled-from-list")


async def _is(site: Site, job_id: int, state: JobState) -> bool:
    return await site.state(job_id) is state


async def test_times_are_shown_in_the_viewers_time_zone(browser: Any, sqlite_url: str, shots: Path) -> None:
    tokyo = timezone(timedelta(hours=9))  # no summer time: a fixed offset is Tokyo's time all year
    async with _site(browser, sqlite_url, shots, browsing={"timezone_id": "Asia/Tokyo", "locale": "en-US"}) as site:
        job = site.seeded.completed[0]
        await site.goto(f"/jobs/{job.id}")
        enqueued = site.page.locator(".timeline li").first.locator("time.at")
        await expect(enqueued).to_have_attribute("data-local", "")
        assert job.inserted_at is not None
        local = job.inserted_at.astimezone(tokyo)
        assert await enqueued.inner_text() == f"{local:%Y-%m-%d %H:%M:%S} GMT+9"
        assert await enqueued.get_attribute("title") == f"{job.inserted_at:%Y-%m-%d %H:%M:%S} UTC"
        relative = site.page.locator(".timeline li").first.locator("time:not(.at)")
        assert (await relative.get_attribute("title") or "").startswith(f"{local:%Y-%m-%d %H:%M:%S} GMT+9 (")
        footer = await site.page.locator("footer time").inner_text()
        assert footer.endswith("GMT+9") and datetime.strptime(footer[:19], "%Y-%m-%d %H:%M:%S")
        await site.shot("local-times")
        assert site.errors == []


async def test_counts_and_lists_refresh_in_place_and_pause_while_jobs_are_ticked(site: Site) -> None:
    page, jobs = site.page, site.jobs
    await site.goto("/")
    await page.evaluate("() => { window.__loaded = 'once'; }")  # gone if the page were reloaded
    waiting = page.locator(".card-waiting .card-n")
    await expect(waiting).to_have_text("1")
    await jobs.add.options(delay=3600).enqueue(5, 5)
    await expect(waiting).to_have_text("2")
    await expect(page.locator('tr[data-queue="default"] td.count-waiting')).to_have_text("2")
    assert await page.evaluate("() => window.__loaded") == "once"

    await site.goto("/jobs")
    await page.evaluate("() => { window.__loaded = 'once'; }")
    first = await jobs.add.options(delay=3600).enqueue(6, 6)
    await expect(page.locator(f'tr[data-job-id="{first.id}"]')).to_be_visible()
    # A ticked job pauses it: nothing moves under the pointer of someone choosing jobs.
    await page.get_by_label(f"select job {first.id}", exact=True).check()
    await expect(page.locator("html")).to_have_attribute("data-live", "paused-selection")
    second = await jobs.add.options(delay=3600).enqueue(7, 7)
    await _polled(site, "data-live-skips", 3)
    assert second.id not in await site.rows()
    await site.shot("live-paused")
    await page.get_by_label(f"select job {first.id}", exact=True).uncheck()
    await expect(page.locator(f'tr[data-job-id="{second.id}"]')).to_be_visible()
    # So does a hidden tab; coming back brings the page up to date at once.
    await page.evaluate("""() => {
        Object.defineProperty(document, "hidden", {configurable: true, get: () => true});
        document.dispatchEvent(new Event("visibilitychange"));
    }""")
    await expect(page.locator("html")).to_have_attribute("data-live", "paused-hidden")
    third = await jobs.add.options(delay=3600).enqueue(8, 8)
    await _polled(site, "data-live-skips", 3)
    assert third.id not in await site.rows()
    await page.evaluate("""() => {
        delete document.hidden;
        document.dispatchEvent(new Event("visibilitychange"));
    }""")
    await expect(page.locator(f'tr[data-job-id="{third.id}"]')).to_be_visible()
    assert await page.evaluate("() => window.__loaded") == "once"
    # Turned off, it stays off (remembered by the browser).
    await page.get_by_label("live").uncheck()
    await expect(page.locator("html")).to_have_attribute("data-live", "paused-off")
    await site.goto("/jobs")
    await expect(page.get_by_label("live")).not_to_be_checked()
    await page.get_by_label("live").check()
    await expect(page.locator("html")).to_have_attribute("data-live", "on")


@pytest.mark.parametrize("path", ["/", "/jobs", "/jobs?state=failed", "/job", "/schedules", "/engines"])
async def test_every_page_fits_a_phone(browser: Any, sqlite_url: str, shots: Path, path: str) -> None:
    phone = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
    async with _site(browser, sqlite_url, shots, browsing=phone) as site:
        page = site.page
        if path == "/job":
            path = f"/jobs/{site.seeded.hostile.id}"
        await site.goto(path)
        overflow = await page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} is {overflow} px wider than the screen"
        for link in ("Overview", "Jobs", "Schedules", "Engines"):
            box = await page.get_by_role("navigation", name="pages").get_by_role("link", name=link).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, link
        if path.startswith("/jobs?") or path == "/jobs":
            table = page.locator(".scroll").first  # the table scrolls inside its panel
            assert await table.evaluate("e => e.scrollWidth > e.clientWidth")
            assert await page.get_by_role("button", name="Retry selected").is_visible()
        await site.shot("phone" + re.sub(r"\W+", "-", path).rstrip("-"))
        assert site.errors == []
