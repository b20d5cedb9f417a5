"""``dashboard(engine, ...)``: the ASGI app, its routes, and what guards every request.

Every request passes the host check (``_hosts``, when ``allowed_hosts`` is given) and the
access checks (``_auth``) first, and every response carries the security headers: a
Content-Security-Policy that allows scripts and styles from the dashboard's own static
files only (no inline script can run, even one that slipped into a page), no framing, no
sniffing. Errors become pages with the right status: a bad parameter or host name 400, a
refused action 403, an unknown job 404, a closed engine or an unreachable database 503.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Final

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import BackendError, ConfigurationError, Engine, EngineStateError
from ._actions import Actions
from ._auth import Access, AuthCheck, Denied, challenge
from ._csrf import CsrfSigner
from ._hosts import HostCheck
from ._render import PageError, Site, make_templates, render
from ._views import Views

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: Final = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
)


def dashboard(engine: Engine, *, read_only: bool = False, basic_auth: tuple[str, str] | None = None,
              auth: AuthCheck | None = None, secret_key: str | bytes | None = None,
              title: str = "aiojobs", allowed_hosts: Iterable[str] | None = None,
              refresh_interval: float = 5.0) -> Starlette:
    """The web dashboard of ``engine``, as an ASGI app (Starlette).

    Serve it (``aiojobs dashboard``, or uvicorn: its lifespan opens the engine), or mount it
    in your own app (``app.mount("/jobs", dashboard(engine))``; open the engine in your
    app's lifespan). ``read_only``: pages only, every action refused (403).
    ``basic_auth=(user, password)`` and/or ``auth`` (``(request) -> bool``, plain or async)
    decide who may see it. ``secret_key`` signs the CSRF tokens (give the same one to every
    process serving the dashboard; by default a random key per start). ``allowed_hosts``:
    the host names it answers to (``["localhost", "127.0.0.1", "::1"]``, ``"*.example.com"``,
    any port), any other ``Host`` getting a 400 and an action posted from another host a 403,
    against DNS rebinding; by default no check, as the app it is mounted in decides how it
    is reached (``aiojobs dashboard`` on a loopback address allows only the loopback names).
    ``refresh_interval``: seconds between two refreshes of an open page's counts and lists
    (fetched and swapped in place by the page's script; paused while the tab is hidden, a
    field has focus or a job is ticked); 0 turns live refresh off.
    """
    if not isinstance(engine, Engine):
        raise ConfigurationError(f"dashboard() takes an aiojobs_engine.Engine, got {engine!r}")
    if not isinstance(read_only, bool):
        raise ConfigurationError(f"read_only must be True or False, got {read_only!r}")
    refresh_ms = _refresh_ms(refresh_interval)
    access = Access(basic_auth=basic_auth, auth=auth)
    hosts = None if allowed_hosts is None else HostCheck(allowed_hosts)
    site = Site(engine=engine, read_only=read_only, title=str(title), csrf=CsrfSigner(secret_key),
                templates=make_templates(), refresh_ms=refresh_ms)
    views, actions = Views(site), Actions(site)
    routes = [
        Route("/", views.overview),
        Route("/jobs", views.jobs),
        Route("/jobs/selected", actions.selected_jobs, methods=["POST"]),
        Route("/jobs/{job_id}", views.job),
        Route("/jobs/{job_id}/retry", actions.retry_job, methods=["POST"]),
        Route("/jobs/{job_id}/cancel", actions.cancel_job, methods=["POST"]),
        Route("/jobs/{job_id}/delete", actions.delete_job, methods=["POST"]),
        Route("/queues/{queue}/pause", actions.pause_queue, methods=["POST"]),
        Route("/queues/{queue}/resume", actions.resume_queue, methods=["POST"]),
        Route("/queues/{queue}/concurrency", actions.set_concurrency, methods=["POST"]),
        Route("/queues/{queue}/rate", actions.set_rate, methods=["POST"]),
        Route("/queues/{queue}/per-key", actions.set_per_key, methods=["POST"]),
        Route("/queues/{queue}/failed/{action}", views.confirm, methods=["GET"]),
        Route("/queues/{queue}/failed/{action}", actions.failed_jobs, methods=["POST"]),
        Route("/schedules", views.schedules),
        Route("/engines", views.engines),
        Mount("/static", StaticFiles(packages=[("aiojobs_engine.dashboard", "static")]), name="static"),
    ]

    def error_page(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        response = render(site, request, "error.html", {"page": "", "status": status, "message": message},
                          status=status)
        response.headers.update(headers or {})
        return response

    async def on_page_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageError)
        return error_page(request, exc.status, exc.message)

    async def on_bad_value(request: Request, exc: Exception) -> Response:
        return error_page(request, 400, str(exc))

    async def on_unavailable(request: Request, exc: Exception) -> Response:
        return error_page(request, 503, str(exc))  # a closed engine says how to open it

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = "There is no such page." if exc.status_code == 404 else str(exc.detail)
        return error_page(request, exc.status_code, message, dict(exc.headers or {}))

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with engine:
            yield

    return Starlette(
        routes=routes,
        middleware=[Middleware(_Guard, access=access, hosts=hosts)],
        exception_handlers={PageError: on_page_error, ConfigurationError: on_bad_value,
                            EngineStateError: on_unavailable, BackendError: on_unavailable, HTTPException: on_http},
        lifespan=lifespan,
    )


def _refresh_ms(seconds: object) -> int:
    """The live refresh period in milliseconds: 0 (off), or between 0.1 s and an hour."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not (
            seconds == 0 or 0.1 <= seconds <= 3600):
        raise ConfigurationError(f"refresh_interval must be 0 (off) or between 0.1 and 3600 seconds, got {seconds!r}")
    return round(seconds * 1000)


class _Guard:
    """The host and access checks before anything else; security headers on every response."""

    def __init__(self, app: ASGIApp, *, access: Access, hosts: HostCheck | None) -> None:
        self.app = app
        self.access = access
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        request = Request(scope, receive)
        try:
            if self.hosts is not None:
                self.hosts.check(request)  # first: a rebinding page must not even get a 401 prompt
            await self.access.check(request)
        except Denied as denied:
            headers = challenge() if denied.status == 401 else {}
            response = PlainTextResponse(denied.message, status_code=denied.status, headers=headers)
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)
