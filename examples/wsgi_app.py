"""A synchronous web app (Flask and Django views work the same way) that enqueues jobs.

    python examples/wsgi_app.py --port 8000            # serves, and runs the jobs in a thread
    python examples/wsgi_app.py --port 8000 --no-work  # serves only; run `aiojobs work` beside it

Sync views cannot await, so they call ``enqueue_sync()``: it blocks the view's thread until
the job is stored, and is safe from any number of request threads at once. With the engine
running in this process (a background thread here), the job goes through the engine's own
loop; without it, through connections kept for sync callers. In Flask:

    @app.post("/orders/<int:order_id>")
    def place_order(order_id):
        record = send_receipt.enqueue_sync(order_id)
        return {"job_id": record.id}, 202

POST /orders/{id} answers 202 with the job's id. Uses only the standard library's WSGI server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from aiojobs_engine import Engine

engine = Engine()  # ./aiojobs.sqlite3, or $AIOJOBS_DATABASE_URL


@engine.job(queue="email", max_attempts=5)
async def send_receipt(order_id: int) -> dict[str, int]:
    await asyncio.sleep(0.01)  # call the mail provider here
    return {"receipt_for": order_id}


StartResponse = Callable[[str, list[tuple[str, str]]], Any]
_ORDER = re.compile(r"^/orders/(\d+)$")


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The WSGI application: one sync view that enqueues."""
    match = _ORDER.match(environ.get("PATH_INFO", ""))
    if environ["REQUEST_METHOD"] != "POST" or match is None:
        return _reply(start_response, "404 Not Found", {"error": "POST /orders/{id}"})
    record = send_receipt.enqueue_sync(int(match.group(1)))
    assert record is not None  # no hook here vetoes jobs
    return _reply(start_response, "202 Accepted", {"job_id": record.id, "state": record.state})


def _reply(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # one thread per request, as threaded WSGI servers do


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # the stdlib's parameter name
        pass


class EngineThread:
    """The engine working jobs on an event loop of its own thread, beside the sync server."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._work(),), name="aiojobs-engine")

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(30)

    def stop(self) -> None:
        """Stop claiming, let running jobs finish (within shutdown_grace), close."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()

    async def _work(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with engine.running():
            self._ready.set()
            await self._stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--no-work", action="store_true", help="serve only; jobs run elsewhere")
    args = parser.parse_args()
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    worker = None if args.no_work else EngineThread()
    if worker is not None:
        worker.start()
    with make_server("127.0.0.1", args.port, app, server_class=_ThreadingServer, handler_class=_QuietHandler) as server:
        threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
        print(f"serving on http://127.0.0.1:{args.port}", flush=True)
        stopping.wait()
        server.shutdown()
    if worker is not None:
        worker.stop()
    engine.close_sync()  # the connections enqueue_sync opened, if it needed its own
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
