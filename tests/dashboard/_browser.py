"""A served, seeded dashboard and a browser page on it: what the browser tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiojobs_engine import JobState, QueueRecord

from ._support import Jobs, LiveDashboard, Seeded, make_jobs, seed, serving, state_of


class Site:
    """A served, seeded dashboard and a fresh browser page on it."""

    def __init__(self, live: LiveDashboard, jobs: Jobs, seeded: Seeded, context: Any, page: Any,
                 shots: Path) -> None:
        self.live, self.jobs, self.seeded = live, jobs, seeded
        self.context, self.page, self.shots = context, page, shots
        self.errors: list[str] = []
        page.set_default_timeout(10_000)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on("console", lambda message: self.errors.append(message.text) if message.type == "error" else None)

    async def goto(self, path: str) -> Any:
        return await self.page.goto(self.live.url + path)

    async def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 5000
        return path

    async def state(self, job_id: int) -> JobState | None:
        return await state_of(self.jobs.engine, job_id)

    async def queue(self, name: str) -> QueueRecord:
        return next(q for q in await self.jobs.engine.list_queues() if q.name == name)

    async def rows(self) -> list[int]:
        ids = await self.page.locator("tr[data-job-id]").evaluate_all("rows => rows.map(r => r.dataset.jobId)")
        return [int(i) for i in ids]

    def answer_dialog(self, accept: bool) -> None:
        """Answer the next confirm() the page shows."""
        self.page.once("dialog", lambda dialog: dialog.accept() if accept else dialog.dismiss())


@asynccontextmanager
async def _site(browser: Any, url: str, shots: Path, *, browsing: dict[str, Any] | None = None,
                **options: Any) -> AsyncIterator[Site]:
    """``options`` go to ``dashboard()``, ``browsing`` to the browser context (viewport, time zone)."""
    jobs = make_jobs(url)
    async with serving(jobs.engine, **options) as live:
        seeded = await seed(jobs)
        context = await browser.new_context(**{"base_url": live.url, "viewport": {"width": 1400, "height": 900},
                                               **(browsing or {})})
        try:
            yield Site(live, jobs, seeded, context, await context.new_page(), shots)
        finally:
            await context.close()
