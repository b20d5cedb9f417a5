"""The actions: POST only, each checked for read-only mode and CSRF before it acts.

Each one calls the public ``Engine`` API and answers with a 303 redirect back to the page
the form came from (its ``next`` field, when it is a page of this dashboard) carrying a
notice code, so a reload never repeats an action. Actions on every failed job of a queue
need ``confirm=yes``, which only their confirmation page sends; so does deleting the jobs
ticked in a list (the script's prompt sends it, else a confirmation page asks).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .. import JobState, UniqueConflictError
from .._options import parse_concurrency_per_key, parse_rate_limit
from . import _selection as selection
from ._csrf import COOKIE, FIELD, HEADER
from ._render import READ_ONLY, PageError, Site, Urls, prefix_of, render
from ._views import BULK_ACTIONS, parse_int

FORM_LIMIT: Final = 16 * 1024  # bytes: our forms hold a token, a path and a number
SELECTION_LIMIT: Final = 32 * 1024  # bytes: a token, a path and up to 500 ids of 19 digits
FORM_TYPE: Final = "application/x-www-form-urlencoded"
RETRY_BATCH: Final = 200  # failed jobs read per page while retrying a whole queue


class Actions:
    __slots__ = ("site",)

    def __init__(self, site: Site) -> None:
        self.site = site

    # -- one job ------------------------------------------------------------------------

    async def retry_job(self, request: Request) -> Response:
        form = await self._form(request)
        job_id = _job_id(request)
        before = await self.site.engine.get_job(job_id)
        if before is None:
            raise PageError(404, f"There is no job {job_id}.")
        code, number = "not-retried", job_id
        if before.is_terminal:
            try:
                after = await self.site.engine.retry_job(job_id)
            except UniqueConflictError as exc:  # its unique key is taken: say by which job
                code, number = ("retry-conflict", exc.holder_id) if exc.holder_id else ("retry-conflict-gone", job_id)
            else:
                code = "retried" if after is not None and after.state is JobState.WAITING else "not-retried"
        return _back(request, form, Urls(prefix_of(request)).job(job_id), code, number)

    async def cancel_job(self, request: Request) -> Response:
        form = await self._form(request)
        job_id = _job_id(request)
        before = await self.site.engine.get_job(job_id)
        record = None if before is None or before.is_terminal else await self.site.engine.cancel(job_id)
        if before is None:
            raise PageError(404, f"There is no job {job_id}.")
        if record is None:
            code = "not-canceled"
        elif record.state is JobState.CANCELED:
            code = "canceled"
        elif record.cancel_requested:
            code = "cancel-requested"
        else:
            code = "not-canceled"
        return _back(request, form, Urls(prefix_of(request)).job(job_id), code, job_id)

    async def delete_job(self, request: Request) -> Response:
        form = await self._form(request)
        job_id = _job_id(request)
        urls = Urls(prefix_of(request))
        if await self.site.engine.delete_job(job_id):
            # Not back to the job's own page: it is gone.
            target = form.get("next", "")
            if target.startswith(urls.job(job_id)):
                form = {**form, "next": ""}
            return _back(request, form, urls("/jobs"), "deleted", job_id)
        return _back(request, form, urls.job(job_id), "not-deleted", job_id)

    # -- the jobs ticked in a list --------------------------------------------------------

    async def selected_jobs(self, request: Request) -> Response:
        """Retry, cancel or delete each job ticked in a list; deleting asks first."""
        fields = await self._fields(request, max_fields=selection.MAX_SELECTED + 8, limit=SELECTION_LIMIT)
        form = {key: values[0] for key, values in fields.items()}
        action = form.get("action", "")
        if action not in selection.ACTIONS:
            raise PageError(400, f"Unknown action {action!r} on the selected jobs: retry, cancel or delete.")
        ids = _selected_ids(fields.get("id", []))
        urls = Urls(prefix_of(request))
        if not ids:
            return _back(request, form, urls("/jobs"), "selection-empty")
        if action == "delete" and form.get("confirm") != "yes":
            back = form.get("next", "")
            return render(self.site, request, "confirm_selection.html", {
                "page": "jobs", "ids": ids, "next": back if urls.is_own(back) else urls("/jobs"),
            })
        outcome = await selection.apply(self.site.engine, action, ids)
        return _back_to(request, form, urls("/jobs"), {"notice": "selection", **outcome.query()})

    # -- queues -------------------------------------------------------------------------

    async def pause_queue(self, request: Request) -> Response:
        form = await self._form(request)
        await self.site.engine.pause_queue(_queue(request))
        return _back(request, form, Urls(prefix_of(request))("/"), "paused")

    async def resume_queue(self, request: Request) -> Response:
        form = await self._form(request)
        await self.site.engine.resume_queue(_queue(request))
        return _back(request, form, Urls(prefix_of(request))("/"), "resumed")

    async def set_concurrency(self, request: Request) -> Response:
        form = await self._form(request)
        concurrency = parse_int(form.get("concurrency", "").strip(), "concurrency", 1, 1_000_000)
        record = await self.site.engine.set_queue(_queue(request), concurrency=concurrency)
        return _back(request, form, Urls(prefix_of(request))("/"), "concurrency", record.concurrency)

    async def set_rate(self, request: Request) -> Response:
        """Store a queue's rate limit from ``20/1s`` (or ``none``, no limit); a bad text is a
        400 that says what is accepted."""
        form = await self._form(request)
        rate = parse_rate_limit(form.get("rate", ""), "rate limit")
        await self.site.engine.set_queue(_queue(request), rate_limit=rate)
        return _back(request, form, Urls(prefix_of(request))("/"), "rate" if rate else "rate-removed")

    async def set_per_key(self, request: Request) -> Response:
        """Store a queue's per-key limits from ``per_key`` (``2``) and ``rate_per_key``
        (``5/1s``), each ``none`` for no limit; a bad text is a 400 that says what is accepted."""
        form = await self._form(request)
        per_key = parse_concurrency_per_key(form.get("per_key", ""), "concurrency per key")
        rate = parse_rate_limit(form.get("rate_per_key", ""), "rate limit per key")
        await self.site.engine.set_queue(_queue(request), concurrency_per_key=per_key, rate_limit_per_key=rate)
        return _back(request, form, Urls(prefix_of(request))("/"), "per-key" if per_key or rate else "per-key-removed")

    async def failed_jobs(self, request: Request) -> Response:
        """Retry or delete every failed job of a queue, once confirmed."""
        form = await self._form(request)
        queue = _queue(request)
        action = str(request.path_params["action"])
        urls = Urls(prefix_of(request))
        if action not in BULK_ACTIONS:
            raise PageError(404, f"Unknown action {action!r}.")
        if form.get("confirm") != "yes":
            return RedirectResponse(urls.queue(queue, f"failed/{action}"), status_code=303)
        if action == "retry":
            count = await self._retry_failed(queue)
            return _back(request, form, urls("/"), "failed-retried", count)
        count = await self.site.engine.clear(states=[JobState.FAILED], queues=[queue])
        return _back(request, form, urls("/"), "failed-deleted", count)

    async def _retry_failed(self, queue: str) -> int:
        """Page through the queue's failed jobs, newest first, retrying each one."""
        engine = self.site.engine
        retried = 0
        before: int | None = None
        while True:
            page = await engine.list_jobs(state=JobState.FAILED, queue=queue, limit=RETRY_BATCH, before_id=before)
            for job in page:
                try:
                    record = await engine.retry_job(job.id)
                except UniqueConflictError:
                    continue  # its unique key is held by a newer job: it stays failed
                retried += record is not None and record.state is JobState.WAITING
            if len(page) < RETRY_BATCH:
                return retried
            before = page[-1].id

    # -- what every action checks first ---------------------------------------------------

    async def _form(self, request: Request) -> dict[str, str]:
        """The submitted fields (the first value of each), once read-only mode and the CSRF
        token allow the action."""
        return {key: values[0] for key, values in (await self._fields(request)).items()}

    async def _fields(self, request: Request, *, max_fields: int = 32,
                      limit: int = FORM_LIMIT) -> dict[str, list[str]]:
        """Every value of every submitted field, once read-only mode and the CSRF token allow
        the action."""
        if self.site.read_only:
            raise PageError(403, READ_ONLY)
        fields: dict[str, list[str]] = {}
        content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if content_type == FORM_TYPE:
            body = await _read(request, limit)
            try:
                fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=max_fields)
            except ValueError:
                raise PageError(400, "Too many form fields.") from None
        submitted = fields.get(FIELD, [""])[0] or request.headers.get(HEADER)
        if not self.site.csrf.check(request.cookies.get(COOKIE), submitted):
            raise PageError(403, "The form's security token is missing or does not match (CSRF check): reload the "
                               "page and try again.")
        return fields


async def _read(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PageError(413, "The form is too large.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PageError(413, "The form is too large.")
    return bytes(body)


def _selected_ids(values: list[str]) -> list[int]:
    """The ticked job ids, each once, in page order; a 400 for one that is not an id, or too many."""
    ids = list(dict.fromkeys(parse_int(value.strip(), "job id", 1) for value in values))
    if len(ids) > selection.MAX_SELECTED:
        raise PageError(400, f"At most {selection.MAX_SELECTED} jobs can be acted on at once, got {len(ids)}.")
    return ids


def _job_id(request: Request) -> int:
    return parse_int(str(request.path_params["job_id"]), "job id", 1)


def _queue(request: Request) -> str:
    return str(request.path_params["queue"])  # the engine checks the name


def _back(request: Request, form: dict[str, str], default: str, code: str, number: int | None = None) -> Response:
    """303 to the form's ``next`` page (when it is one of ours), else ``default``, with a notice."""
    query = {"notice": code} if number is None else {"notice": code, "n": str(number)}
    return _back_to(request, form, default, query)


def _back_to(request: Request, form: dict[str, str], default: str, query: dict[str, str]) -> Response:
    urls = Urls(prefix_of(request))
    target = form.get("next", "")
    if not urls.is_own(target):
        target = default
    separator = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{separator}{urlencode(query)}", status_code=303)
