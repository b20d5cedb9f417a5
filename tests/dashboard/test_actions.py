"""The actions, in process: each one changes the database as asked, and only as asked."""

from __future__ import annotations

import pytest

from aiojobs_engine import JobState
from aiojobs_engine.dashboard import _actions

from ._support import state_of
from .conftest import Env


async def test_retry_runs_a_failed_job_again(env_any: Env) -> None:
    job = env_any.seeded.failed
    response = await env_any.post(f"/jobs/{job.id}/retry", next=f"/jobs/{job.id}")
    assert response.status_code == 303
    assert response.headers["location"] == f"/jobs/{job.id}?notice=retried&n={job.id}"
    assert await state_of(env_any.engine, job.id) is JobState.WAITING
    page = await env_any.client.get(response.headers["location"])
    assert f"Job {job.id} will run again now." in page.text


async def test_retry_leaves_a_pending_job_alone(env: Env) -> None:
    job = env.seeded.waiting
    response = await env.post(f"/jobs/{job.id}/retry")
    assert "notice=not-retried" in response.headers["location"]
    record = await env.engine.get_job(job.id)
    assert record.state is JobState.WAITING and record.available_at == job.available_at


async def test_cancel_cancels_a_waiting_job(env_any: Env) -> None:
    job = env_any.seeded.waiting
    response = await env_any.post(f"/jobs/{job.id}/cancel")
    assert response.status_code == 303 and "notice=canceled" in response.headers["location"]
    assert await state_of(env_any.engine, job.id) is JobState.CANCELED
    again = await env_any.post(f"/jobs/{job.id}/cancel")
    assert "notice=not-canceled" in again.headers["location"]


async def test_delete_removes_a_job_and_goes_back_to_the_list(env_any: Env) -> None:
    job = env_any.seeded.completed[0]
    response = await env_any.post(f"/jobs/{job.id}/delete", next=f"/jobs/{job.id}")
    assert response.headers["location"] == f"/jobs?notice=deleted&n={job.id}"
    assert await env_any.engine.get_job(job.id) is None
    assert (await env_any.post(f"/jobs/{job.id}/retry")).status_code == 404


async def test_actions_on_unknown_jobs_are_404(env: Env) -> None:
    for action in ("retry", "cancel"):
        response = await env.post(f"/jobs/424242/{action}")
        assert response.status_code == 404 and "There is no job 424242" in response.text
    assert "notice=not-deleted" in (await env.post("/jobs/424242/delete")).headers["location"]


async def test_pause_resume_and_concurrency_are_stored(env_any: Env) -> None:
    async def email() -> object:
        return next(q for q in await env_any.engine.list_queues() if q.name == "email")

    assert (await env_any.post("/queues/email/pause")).headers["location"] == "/?notice=paused"
    assert (await email()).paused  # type: ignore[attr-defined]
    await env_any.post("/queues/email/resume")
    assert not (await email()).paused  # type: ignore[attr-defined]
    response = await env_any.post("/queues/email/concurrency", concurrency="7")
    assert response.headers["location"] == "/?notice=concurrency&n=7"
    assert (await email()).concurrency == 7  # type: ignore[attr-defined]
    for bad in ("0", "-1", "many", ""):
        refused = await env_any.post("/queues/email/concurrency", concurrency=bad)
        assert refused.status_code == 400, bad
    assert (await email()).concurrency == 7  # type: ignore[attr-defined]
    assert (await env_any.post("/queues/bad%20name/pause")).status_code == 400


async def test_a_queue_rate_limit_is_set_shown_and_removed(env_any: Env) -> None:
    async def email() -> object:
        return next(q for q in await env_any.engine.list_queues() if q.name == "email")

    response = await env_any.post("/queues/email/rate", rate="20/1s")
    assert response.headers["location"] == "/?notice=rate"
    assert (await email()).rate_limit == (20, 1.0)  # type: ignore[attr-defined]
    page = await env_any.client.get("/")
    assert 'name="rate" value="20/1s"' in page.text and "rate limit is stored" in (
        await env_any.client.get("/?notice=rate")).text
    for bad in ("20", "0/1s", "fast", "5/0s"):
        refused = await env_any.post("/queues/email/rate", rate=bad)
        assert refused.status_code == 400 and "rate limit" in refused.text, bad
    assert (await email()).rate_limit == (20, 1.0)  # type: ignore[attr-defined]
    removed = await env_any.post("/queues/email/rate", rate="none")
    assert removed.headers["location"] == "/?notice=rate-removed"
    assert (await email()).rate_limit is None  # type: ignore[attr-defined]


async def test_a_queues_per_key_limits_are_set_shown_and_removed(env_any: Env) -> None:
    async def email() -> tuple[object, object]:
        queue = next(q for q in await env_any.engine.list_queues() if q.name == "email")
        return queue.concurrency_per_key, queue.rate_limit_per_key

    response = await env_any.post("/queues/email/per-key", per_key="2", rate_per_key="5/1s")
    assert response.headers["location"] == "/?notice=per-key"
    assert await email() == (2, (5, 1.0))
    page = (await env_any.client.get("/")).text
    assert 'name="per_key" value="2"' in page and 'name="rate_per_key" value="5/1s"' in page
    assert "per-key limits are stored" in (await env_any.client.get("/?notice=per-key")).text
    for per_key, rate, message in (("0", "none", "concurrency per key must be between 1 and 100000"),
                                   ("two", "none", "concurrency per key takes a number of jobs"),
                                   ("", "none", "concurrency per key takes a number of jobs"),
                                   ("2", "5", "rate limit per key takes N/WINDOW"),
                                   ("2", "0/1s", "rate limit per key&#39;s starts must be between 1")):
        refused = await env_any.post("/queues/email/per-key", per_key=per_key, rate_per_key=rate)
        assert refused.status_code == 400 and message in refused.text, (per_key, rate)
    assert await email() == (2, (5, 1.0))
    partly = await env_any.post("/queues/email/per-key", per_key="none", rate_per_key="5/1s")
    assert partly.headers["location"] == "/?notice=per-key"
    assert await email() == (None, (5, 1.0))
    removed = await env_any.post("/queues/email/per-key", per_key="none", rate_per_key="none")
    assert removed.headers["location"] == "/?notice=per-key-removed"
    assert await email() == (None, None)
    assert 'name="per_key" value="none"' in (await env_any.client.get("/")).text


async def test_retry_all_failed_asks_first_then_retries_every_page(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_actions, "RETRY_BATCH", 2)  # several pages from a few jobs
    more = [await env.jobs.boom.enqueue(str(i)) for i in range(3)]
    await env.engine.workoff()
    failed = [env.seeded.failed.id, env.seeded.hostile.id, *(r.id for r in more)]
    confirm = await env.client.get("/queues/default/failed/retry")
    assert confirm.status_code == 200 and "<strong>5</strong> failed jobs" in confirm.text
    assert 'name="confirm" value="yes"' in confirm.text
    unconfirmed = await env.post("/queues/default/failed/retry")
    assert unconfirmed.status_code == 303 and unconfirmed.headers["location"] == "/queues/default/failed/retry"
    assert all([await state_of(env.engine, i) is JobState.FAILED for i in failed])
    done = await env.post("/queues/default/failed/retry", confirm="yes")
    assert done.headers["location"] == "/?notice=failed-retried&n=5"
    assert all([await state_of(env.engine, i) is JobState.WAITING for i in failed])


async def test_retry_of_a_unique_job_whose_key_is_held_says_which_job_holds_it(env_any: Env) -> None:
    boom = env_any.jobs.boom.options(unique=True)
    failed = await boom.enqueue("once")
    await env_any.engine.workoff()
    holder = await boom.enqueue("once")  # the key was free again: a newer job holds it now
    assert failed.id != holder.id
    response = await env_any.post(f"/jobs/{failed.id}/retry", next=f"/jobs/{failed.id}")
    assert response.status_code == 303
    assert response.headers["location"] == f"/jobs/{failed.id}?notice=retry-conflict&n={holder.id}"
    page = await env_any.client.get(response.headers["location"])
    assert f"The job was not retried: job {holder.id} holds its unique key." in page.text
    assert await state_of(env_any.engine, failed.id) is JobState.FAILED
    # Retrying every failed job of the queue skips it and retries the others.
    done = await env_any.post("/queues/default/failed/retry", confirm="yes")
    assert done.headers["location"] == "/?notice=failed-retried&n=2"
    assert await state_of(env_any.engine, failed.id) is JobState.FAILED


async def test_delete_all_failed_deletes_only_that_queues_failed_jobs(env_any: Env) -> None:
    done = await env_any.post("/queues/default/failed/delete", confirm="yes")
    assert done.headers["location"] == "/?notice=failed-deleted&n=2"
    assert await env_any.engine.list_jobs(state="failed") == []
    assert len(await env_any.engine.list_jobs()) == 6


async def test_actions_are_post_only(env: Env) -> None:
    job = env.seeded.failed
    for path in (f"/jobs/{job.id}/retry", f"/jobs/{job.id}/delete", "/queues/email/pause"):
        assert (await env.client.get(path)).status_code == 405
    assert await state_of(env.engine, job.id) is JobState.FAILED
    assert (await env.client.get("/queues/default/failed/wipe")).status_code == 404


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil", "javascript:alert(1)"])
async def test_actions_only_redirect_to_the_dashboards_own_pages(env: Env, target: str) -> None:
    response = await env.post(f"/jobs/{env.seeded.failed.id}/retry", next=target)
    location = response.headers["location"]
    assert location.startswith(f"/jobs/{env.seeded.failed.id}?notice=")


async def test_a_notice_cannot_be_made_to_say_anything(env: Env) -> None:
    html = (await env.client.get("/", params={"notice": "retried", "n": "<b>1</b>"})).text
    assert "Job ? will run again now." in html and "<b>1</b>" not in html
    assert 'class="notice' not in (await env.client.get("/", params={"notice": "hacked"})).text
