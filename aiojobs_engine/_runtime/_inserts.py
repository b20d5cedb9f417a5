"""From a validated request to the row change that stores it (shared by enqueue and cron)."""

from __future__ import annotations

from datetime import datetime

from .._backends._protocol import JobInsert
from .._handles import JobRequest
from .._records import JobState
from .._validation import seconds_from


def insert_for(request: JobRequest, now: datetime, *, unique_key: str | None = None,
               unique_states: tuple[JobState, ...] = (), rescheduled_from: int | None = None) -> JobInsert:
    """The insert for ``request``; ``unique_key`` (with ``unique_states``) overrides the
    request's own uniqueness (cron ticks use it)."""
    options = request.options
    unique = None if unique_key is not None else options.unique_config
    key = unique_key
    if unique is not None:
        key = unique.key_for(request.name, request.args_json, request.kwargs_json, now,
                             request.constructor_args_json)
        unique_states = tuple(JobState(s) for s in unique.states)
    return JobInsert(
        queue=request.queue,
        name=request.name,
        args_json=request.args_json,
        kwargs_json=request.kwargs_json,
        constructor_args_json=request.constructor_args_json,
        meta_json=request.meta_json,
        retry_json=request.retry_json,
        priority=request.priority,
        max_attempts=request.max_attempts,
        timeout=request.timeout,
        delay=options.delay,
        run_at=options.run_at,
        unique_key=key,
        unique_states=unique_states if key is not None else (),
        unique_replace=unique is not None and unique.on_conflict == "replace",
        stuck_after=None if unique is None else seconds_from(unique.replace_running_after, "replace_running_after"),
        rescheduled_from=rescheduled_from,
        keep=dict(options.retention or {}),
        concurrency_key=request.concurrency_key,
    )
