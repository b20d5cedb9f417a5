"""Fixtures of the dashboard tests: seeded engines, an in-process client, a browser.

In-process tests (every machine) call the ASGI app through httpx. Browser tests drive
Debian's Chromium headless with Playwright; they skip, saying why, where either is missing,
except with ``AIOJOBS_TEST_REQUIRE_BROWSER=1`` (CI), where a missing browser fails them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from aiojobs_engine.dashboard import dashboard

from ._support import Jobs, Seeded, make_jobs, seed

CHROMIUM = os.environ.get("AIOJOBS_TEST_CHROMIUM", "/usr/bin/chromium")  # Debian's; another path elsewhere
REQUIRE_BROWSER = os.environ.get("AIOJOBS_TEST_REQUIRE_BROWSER") == "1"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BASE = "http://dashboard.test"


@dataclass
class Env:
    jobs: Jobs
    seeded: Seeded
    client: httpx.AsyncClient

    @property
    def engine(self) -> Any:
        return self.jobs.engine

    async def token(self, path: str = "/") -> str:
        """Visit a page (which sets the CSRF cookie) and return the token its forms carry."""
        response = await self.client.get(path)
        assert response.status_code == 200, response.text
        return self.client.cookies["aiojobs_csrf"]

    async def post(self, path: str, **fields: str) -> httpx.Response:
        """Submit a form as the dashboard's own pages do (with the CSRF token)."""
        token = await self.token()
        return await self.client.post(path, data={"csrf_token": token, **fields})


async def _env(url: str, **options: Any) -> AsyncIterator[Env]:
    jobs = make_jobs(url)
    async with jobs.engine:
        seeded = await seed(jobs)
        app = dashboard(jobs.engine, **options)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
            yield Env(jobs, seeded, client)


@pytest.fixture
async def env(sqlite_url: str) -> AsyncIterator[Env]:
    """A seeded SQLite database and a client of its dashboard."""
    async for value in _env(sqlite_url):
        yield value


@pytest.fixture
async def env_any(db_url: str) -> AsyncIterator[Env]:
    """The same on each backend in turn."""
    async for value in _env(db_url):
        yield value


def _browser_missing() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    return None


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    """Headless Chromium, shared by a module's browser tests (which run in the module's loop)."""
    reason = _browser_missing()
    if reason is not None:
        if REQUIRE_BROWSER:
            pytest.fail(f"the browser tests are required (AIOJOBS_TEST_REQUIRE_BROWSER=1) but {reason}")
        pytest.skip(f"browser tests need Debian's Chromium and Playwright: {reason}")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where a browser test saves its screenshots."""
    folder = tmp_path / "screenshots"
    folder.mkdir()
    return folder
