"""Integrations with other libraries, each an optional module built on the public API only.

- ``aiojobs_engine.contrib.opentelemetry``: a span per attempt, joined to the trace that
  enqueued the job (extra ``otel``: ``pip install 'aiojobs_engine[otel]'``).
- ``aiojobs_engine.contrib.prometheus``: counters, histograms and per-state gauges
  (extra ``prometheus``).
- ``aiojobs_engine.contrib.fastapi``: ``engine_lifespan(engine)`` for ``FastAPI(lifespan=...)``
  (and any Starlette app); needs nothing beyond FastAPI itself.
- ``aiojobs_engine.contrib.aiohttp``: ``setup(app, engine)`` for an ``aiohttp.web`` app.

Nothing here is imported by the engine: importing ``aiojobs_engine`` never imports these
libraries. Importing one of these modules without its library raises ``MissingExtraError``
(a ``ModuleNotFoundError``, ``name`` kept) whose message names the extra to install.
See docs/observability.md and docs/integrations.md.
"""
