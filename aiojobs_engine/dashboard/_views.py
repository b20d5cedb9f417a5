"""The pages (GET only; they change nothing): overview, jobs, one job, schedules, engines,
and the confirmation page of the actions that touch many jobs.

Everything is read through the public ``Engine`` API. Bad query parameters raise
``ConfigurationError`` (as the engine does for a bad queue name), which the app shows as a
400 page.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .. import ConfigurationError, EngineRecord, JobRecord, JobState, QueueRecord
from ._charts import Chart, activity_series, chart, empty_series, window_start
from ._render import READ_ONLY, STATES, PageError, Site, Urls, prefix_of, render

PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 500
MAX_ID: Final = 2**63 - 1  # ids are 64-bit integers in both databases
HELD_LIMIT: Final = 1000  # running and claimed jobs shown on the engines page
CHART_SPAN: Final = 3600.0
CHART_STEP: Final = 60.0

BULK_ACTIONS: Final = {
    "retry": ("Retry", "run again now"),
    "delete": ("Delete", "delete for good"),
}


@dataclass(frozen=True, slots=True)
class QueueRow:
    name: str
    settings: QueueRecord | None  # None: jobs exist, but no settings are stored
    counts: dict[JobState, int]
    chart: Chart

    @property
    def paused(self) -> bool:
        return self.settings is not None and self.settings.paused

    @property
    def held(self) -> int:
        return self.counts[JobState.CLAIMED] + self.counts[JobState.RUNNING]


@dataclass(frozen=True, slots=True)
class EngineRow:
    record: EngineRecord | None  # None: jobs held by an engine that is no longer registered
    engine_id: str
    alive: bool
    heartbeat_age: float | None
    jobs: list[JobRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Moment:
    label: str
    at: datetime
    kind: str  # a CSS class: what kind of event this was


class Views:
    __slots__ = ("site",)

    def __init__(self, site: Site) -> None:
        self.site = site

    async def overview(self, request: Request) -> Response:
        engine = self.site.engine
        now = engine.clock.now()
        stored = {q.name: q for q in await engine.list_queues()}
        counts = await engine.count_jobs()
        activity = await engine.job_activity(since=window_start(now, span=CHART_SPAN, step=CHART_STEP),
                                             bucket=CHART_STEP)
        series, total = activity_series(activity, now=now, span=CHART_SPAN, step=CHART_STEP)
        empty = empty_series(now=now, span=CHART_SPAN, step=CHART_STEP)
        names = set(stored) | {queue for queue, _ in counts}
        rows = [
            QueueRow(name=name, settings=stored.get(name),
                     counts={state: counts.get((name, state), 0) for state in STATES},
                     chart=chart(series.get(name, empty)))
            for name in names
        ]
        rows.sort(key=lambda row: (row.settings.priority if row.settings else 50, row.name))
        totals = {state: sum(row.counts[state] for row in rows) for state in STATES}
        engines = await engine.list_engines()
        alive = sum(1 for e in engines if self._alive(e, now))
        return render(self.site, request, "overview.html", {
            "page": "overview", "queues": rows, "totals": totals, "chart": chart(total, width=1200, height=120),
            "engines_alive": alive,
        })

    async def jobs(self, request: Request) -> Response:
        params = request.query_params
        urls = Urls(prefix_of(request))
        wanted = params.get("id", "").strip().lstrip("#")
        if wanted:
            return RedirectResponse(urls.job(parse_int(wanted, "job id", 1)), status_code=303)
        state = params.get("state") or None
        if state is not None and state not in set(JobState):
            raise ConfigurationError(f"unknown job state {state!r}; accepted: {', '.join(STATES)}")
        queue = params.get("queue") or None
        name = params.get("name", "").strip() or None
        search = params.get("q", "").strip() or None
        limit = parse_int(params.get("limit") or str(PAGE_SIZE), "limit", 1, MAX_PAGE_SIZE)
        before = params.get("before_id")
        before_id = parse_int(before, "before_id", 1) if before else None
        engine = self.site.engine
        page = await engine.list_jobs(state=state, queue=queue, name=name, limit=limit + 1, before_id=before_id,
                                      search=search)
        queues = sorted({q.name for q in await engine.list_queues()} | ({queue} if queue else set()))
        jobs = page[:limit]
        older = jobs[-1].id if len(page) > limit and jobs else None
        return render(self.site, request, "jobs.html", {
            "page": "jobs", "jobs": jobs, "queues": queues, "state": state or "", "queue": queue or "",
            "name": name or "", "q": search or "", "limit": limit if limit != PAGE_SIZE else None,
            "before_id": before_id, "older": older,
            # The last error of each job, as a column, once a job of the page has one.
            "show_errors": any(job.errors for job in jobs),
        })

    async def job(self, request: Request) -> Response:
        job_id = parse_int(str(request.path_params["job_id"]), "job id", 1)
        record = await self.site.engine.get_job(job_id)
        if record is None:
            return render(self.site, request, "error.html", {
                "page": "jobs", "status": 404, "message": f"There is no job {job_id}: it never existed, or it "
                                                          "was deleted or pruned.",
            }, status=404)
        return render(self.site, request, "job.html", {
            "page": "jobs", "job": record, "timeline": _timeline(record),
            "can_retry": record.is_terminal, "can_cancel": not record.is_terminal,
            "can_delete": record.state not in (JobState.CLAIMED, JobState.RUNNING),
        })

    async def schedules(self, request: Request) -> Response:
        schedules = sorted(await self.site.engine.list_schedules(), key=lambda s: s.name)
        return render(self.site, request, "schedules.html", {"page": "schedules", "schedules": schedules})

    async def engines(self, request: Request) -> Response:
        engine = self.site.engine
        now = engine.clock.now()
        records = await engine.list_engines()
        held = await engine.list_jobs(state=[JobState.RUNNING, JobState.CLAIMED], limit=HELD_LIMIT)
        by_engine: dict[str, list[JobRecord]] = defaultdict(list)
        for job in held:
            by_engine[job.claimed_by or "?"].append(job)
        rows = [
            EngineRow(record=r, engine_id=r.id, alive=self._alive(r, now),
                      heartbeat_age=(now - r.heartbeat_at).total_seconds(), jobs=by_engine.pop(r.id, []))
            for r in records
        ]
        rows.sort(key=lambda row: (not row.alive, row.engine_id))
        rows += [EngineRow(record=None, engine_id=owner, alive=False, heartbeat_age=None, jobs=jobs)
                 for owner, jobs in sorted(by_engine.items())]
        return render(self.site, request, "engines.html", {
            "page": "engines", "engines": rows, "held_count": len(held), "held_limit": HELD_LIMIT,
            "stale_after": engine.settings.stale_after,
        })

    async def confirm(self, request: Request) -> Response:
        """Asks before an action on every failed job of a queue (its form posts the action)."""
        queue = str(request.path_params["queue"])
        action = str(request.path_params["action"])
        if self.site.read_only:
            raise PageError(403, READ_ONLY)
        if action not in BULK_ACTIONS:
            raise PageError(404, f"There is no action {action!r} on failed jobs.")
        counts = await self.site.engine.count_jobs()
        return render(self.site, request, "confirm.html", {
            "page": "overview", "queue": queue, "action": action, "verb": BULK_ACTIONS[action][0],
            "effect": BULK_ACTIONS[action][1], "count": counts.get((queue, JobState.FAILED), 0),
        })

    def _alive(self, record: EngineRecord, now: datetime) -> bool:
        return (now - record.heartbeat_at).total_seconds() <= self.site.engine.settings.stale_after


def _timeline(record: JobRecord) -> list[Moment]:
    """Every time stored on the job, and each failed attempt, in the order they happened."""
    moments = [
        Moment(label, at, kind) for label, at, kind in (
            ("enqueued", record.inserted_at, "info"),
            ("available from", record.available_at, "info"),
            ("claimed by an engine", record.claimed_at, "info"),
            ("last attempt started", record.attempted_at, "info"),
            ("completed", record.completed_at, "ok"),
            ("failed for good", record.failed_at, "bad"),
            ("canceled", record.canceled_at, "warn"),
        ) if at is not None
    ]
    for error in record.errors:
        at = error.get("attempted_at")
        if isinstance(at, datetime):
            moments.append(Moment(f"attempt {error.get('attempt', '?')} failed: {error.get('name', '?')}", at, "bad"))
    moments.sort(key=lambda m: m.at)
    return moments


def parse_int(text: str, what: str, minimum: int, maximum: int = MAX_ID) -> int:
    """A whole number from a form or a query, within bounds; ConfigurationError (a 400) if not."""
    try:
        value = int(text)
    except ValueError:
        raise ConfigurationError(f"{what} must be a whole number, got {text!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigurationError(f"{what} must be between {minimum} and {maximum}, got {value}")
    return value
