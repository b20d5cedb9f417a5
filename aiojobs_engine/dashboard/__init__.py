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

try:
    from ._app import dashboard
except ImportError as exc:  # pragma: no cover - depends on what is installed
    if (exc.name or "").partition(".")[0] in {"starlette", "jinja2", "markupsafe"}:
        raise ImportError(
            f"the aiojobs dashboard needs {exc.name}: pip install 'aiojobs_engine[dashboard]'"
        ) from exc
    raise

__all__ = ["dashboard"]
