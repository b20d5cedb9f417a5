"""Pages: the Jinja2 environment, links that follow the mount prefix, and the CSRF cookie.

Autoescaping is on for every template, and nothing is marked safe: whatever a job stored
(arguments, results, error messages, tracebacks) reaches the page as text. Links are built
from the request's ``root_path``, so the same app works served on its own, behind a proxy
(``--root-path``) or mounted in another app (``app.mount("/jobs", dashboard(engine))``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from .. import Engine, JobState, __version__
from . import _format, _selection
from ._csrf import COOKIE, FIELD, CsrfSigner

# States in the order the pages show them: from pending to finished.
STATES: Final = (JobState.WAITING, JobState.SNOOZED, JobState.CLAIMED, JobState.RUNNING, JobState.COMPLETED,
                 JobState.FAILED, JobState.CANCELED)

READ_ONLY: Final = "This dashboard is read-only: it shows jobs but changes nothing."


class PageError(Exception):
    """A request that cannot be served as asked: shown as an error page with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def prefix_of(request: Request) -> str:
    """Where the dashboard is mounted: '' when it is the whole site."""
    return str(request.scope.get("root_path", "")).rstrip("/")


class Urls:
    """Builds every link and form action of a page under the mount prefix."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, path: str, **query: object) -> str:
        kept = {key: str(value) for key, value in query.items() if value is not None and value != ""}
        return f"{self.prefix}{path}" + (f"?{urlencode(kept)}" if kept else "")

    def job(self, job_id: int) -> str:
        return f"{self.prefix}/jobs/{int(job_id)}"

    def queue(self, name: str, action: str) -> str:
        return f"{self.prefix}/queues/{quote(name, safe='')}/{action}"

    def static(self, name: str) -> str:
        return f"{self.prefix}/static/{name}?v={__version__}"

    def is_own(self, target: str) -> bool:
        """A path of this dashboard (where an action may send the browser back to)."""
        return (target.startswith(f"{self.prefix}/") and not target.startswith("//")
                and "\\" not in target and all(ord(c) > 31 for c in target))


@dataclass(frozen=True, slots=True)
class Site:
    """What every page needs: the engine, the settings given to ``dashboard()``, templates."""

    engine: Engine
    read_only: bool
    title: str
    csrf: CsrfSigner
    templates: jinja2.Environment
    refresh_ms: int  # how often open pages fetch their live parts again; 0: never


def make_templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("aiojobs_engine.dashboard", "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=_format.when, json=_format.pretty_json, short_json=_format.short_json,
                       arguments=_format.call_preview, duration=_format.duration, clip=_format.clip,
                       rate=_format.rate, per_key=_format.per_key)
    return env


def render(site: Site, request: Request, template: str, context: Mapping[str, Any], *,
           status: int = 200) -> HTMLResponse:
    """A page, with the CSRF cookie set when the visitor has no valid one yet."""
    token = request.cookies.get(COOKIE)
    fresh = not site.csrf.is_valid(token)
    if fresh or token is None:
        token = site.csrf.issue()
    prefix = prefix_of(request)
    now: datetime = site.engine.clock.now()
    html = site.templates.get_template(template).render({
        "u": Urls(prefix),
        "csrf_field": FIELD,
        "csrf_token": token,
        "read_only": site.read_only,
        "title": site.title,
        "version": __version__,
        "database": _database(site.engine),
        "now": now,
        "ago": lambda moment: _format.relative(moment, now),
        "states": STATES,
        "here": _here(request),
        "notice": _format.notice(request.query_params.get("notice"), request.query_params.get("n")),
        "outcomes": _selection.notices(request.query_params) if request.query_params.get("notice") == "selection"
        else [],
        "refresh_ms": site.refresh_ms,
        **context,
    })
    response = HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})
    if fresh:
        response.set_cookie(COOKIE, token, path=prefix or "/", httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
    return response


def _here(request: Request) -> str:
    """This page's own path and query (without notices): where its actions come back to."""
    query = [(k, v) for k, v in request.query_params.multi_items()
             if k not in ("notice", "n") and k not in _selection.QUERY_KEYS]
    return request.url.path + (f"?{urlencode(query)}" if query else "")


def _database(engine: Engine) -> str:
    try:
        return engine.url  # the password is hidden
    except Exception:  # an unusable $AIOJOBS_DATABASE_URL: the pages say so elsewhere
        return "?"
