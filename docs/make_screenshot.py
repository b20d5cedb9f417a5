"""Make docs/dashboard.png: the dashboard's overview of a demo database, in headless Chromium.

    .venv/bin/python docs/make_screenshot.py            # writes docs/dashboard.png
    .venv/bin/python docs/make_screenshot.py --out /tmp/overview.png --page /jobs
    .venv/bin/python docs/make_screenshot.py --out docs/dashboard-failed.png --page "/jobs?state=failed&limit=8"
    .venv/bin/python docs/make_screenshot.py --out docs/dashboard-phone.png --width 390

It builds an hour of history in a throwaway SQLite database (a frozen clock walks through
the last hour, enqueueing and running jobs minute by minute, some of which fail), starts an
engine at work on it with a few long reports running, serves the dashboard with uvicorn on
127.0.0.1, and screenshots it with Debian's Chromium through Playwright (``apt-get install
chromium``; ``pip install playwright``, never ``playwright install``).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import tempfile
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvicorn
from playwright.async_api import async_playwright

from aiojobs_engine import Engine, FrozenClock
from aiojobs_engine.dashboard import dashboard

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
OUT = Path(__file__).resolve().parent / "dashboard.png"


class Live:
    """The long reports: running until released, so the screenshot shows them running."""

    def __init__(self) -> None:
        self.running = 0
        self.both_running = asyncio.Event()
        self.release = asyncio.Event()


def declare(engine: Engine, live: Live) -> dict[str, Any]:
    @engine.job(queue="email", max_attempts=3)
    async def send_welcome(user_id: int) -> dict[str, int]:
        if user_id % 41 == 0:
            raise ConnectionError("SMTP server closed the connection")
        return {"sent_to": user_id}

    @engine.job(queue="webhooks", max_attempts=1)
    async def deliver_webhook(url: str, event: str) -> int:
        if zlib.crc32(f"{url} {event}".encode()) % 9 == 0:
            raise TimeoutError(f"POST {url} timed out after 10 s")
        return 200

    @engine.job(queue="reports", priority=10)
    async def build_report(month: str) -> str:
        if month.endswith("live"):
            live.running += 1
            if live.running == 2:
                live.both_running.set()
            await live.release.wait()
        return f"s3://reports/{month}.pdf"

    @engine.cron("*/15 * * * *", queue="default")
    @engine.job
    async def refresh_caches() -> None:
        return None

    return {"send_welcome": send_welcome, "deliver_webhook": deliver_webhook, "build_report": build_report}


async def build_history(engine: Engine, clock: FrozenClock, handles: dict[str, Any]) -> None:
    """An hour of traffic, minute by minute, busier in the middle."""
    pick = random.Random(7)
    now = datetime.now(UTC)
    this_minute = now.replace(second=0, microsecond=0)
    send, hook, report = (handles[k] for k in ("send_welcome", "deliver_webhook", "build_report"))
    for minute in range(60, 0, -1):
        clock.set(this_minute - timedelta(minutes=minute) + timedelta(seconds=pick.randint(1, 50)))
        load = 8 - abs(30 - minute) // 6
        await engine.enqueue_many(
            [send.new(pick.randint(1, 5000)) for _ in range(pick.randint(load, load + 6))]
            + [hook.new(f"https://partner{pick.randint(1, 4)}.example/hook", f"order.{pick.randint(1, 999)}")
               for _ in range(pick.randint(0, load // 2 + 2))]
        )
        if minute % 12 == 0:
            await report.enqueue(f"2024-{minute:02d}")
        await engine.workoff()
    clock.set(now)


async def serve_and_shoot(engine: Engine, out: Path, page_path: str, live: Live, handles: dict[str, Any],
                          width: int) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(dashboard(engine), log_config=None, log_level="warning", ws="none",
                                           http="h11", lifespan="on"))
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    async with engine.running():
        for month in ("2024-11-live", "2024-12-live"):
            await handles["build_report"].enqueue(month)
        await handles["send_welcome"].options(delay=600).enqueue(7)
        await engine.pause_queue("webhooks")
        await live.both_running.wait()
        while not server.started:  # noqa: ASYNC110 - uvicorn tells it by a flag, not an event
            await asyncio.sleep(0.01)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}{page_path}"
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport={"width": width, "height": 900}, device_scale_factor=1,
                                          is_mobile=width < 600)
            await page.goto(url)
            await page.screenshot(path=str(out), full_page=True)
            await browser.close()
        live.release.set()
    server.should_exit = True
    await serving
    listener.close()


async def main(out: Path, page_path: str, width: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        clock = FrozenClock(datetime.now(UTC) - timedelta(hours=1))
        engine = Engine(f"sqlite:///{Path(folder) / 'demo.db'}", clock=clock, poll_interval=0.05)
        live = Live()
        handles = declare(engine, live)
        async with engine:
            await engine.set_queue("email", concurrency=20, priority=5)
            await engine.set_queue("reports", concurrency=2)
            await build_history(engine, clock, handles)
            await serve_and_shoot(engine, out, page_path, live, handles, width)
    print(f"wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write the PNG (default: {OUT})")
    parser.add_argument("--page", default="/", help="which page to shoot (default: the overview)")
    parser.add_argument("--width", type=int, default=1400, help="the window's width in pixels (390: a phone)")
    options = parser.parse_args()
    asyncio.run(main(options.out, options.page, options.width))
