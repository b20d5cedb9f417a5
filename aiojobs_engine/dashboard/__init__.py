"""The web dashboard: ``pip install 'aiojobs_engine[dashboard]'``.

    from aiojobs_engine.dashboard import dashboard

    app = dashboard(engine)                       # an ASGI app: uvicorn, or `aiojobs dashboard`
    fastapi_app.mount("/jobs", dashboard(engine, basic_auth=("ops", "secret")))

Pages (overview with per-queue charts, jobs searched by their arguments and meta, one job,
schedules, engines), refreshed in place while open, and actions (retry, cancel, delete a
job or every job ticked in a list; retry or delete a queue's failed jobs; pause, resume,
set a queue's concurrency), all through the public ``Engine`` API. See docs/dashboard.md.
"""

from __future__ import annotations

from .._extras import missing_extra

try:
    from ._app import dashboard
except ImportError as exc:
    missing_extra(exc, module=__name__, extra="dashboard", packages={"starlette", "jinja2", "markupsafe"})

__all__ = ["dashboard"]
