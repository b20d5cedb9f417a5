"""Acting on the jobs ticked in a list, in process: each id gets an outcome, bad input a clear answer."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import parse_qs, urlsplit

import httpx

from aiojobs_engine import JobState
from aiojobs_engine.dashboard import dashboard
from tests._waiting import eventually

from ._support import make_jobs, state_of
from .conftest import BASE, Env


def _query(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 303, response.text
    return {key: values[0] for key, values in parse_qs(urlsplit(response.headers["location"]).query).items()}


async def _notices(env: Env, response: httpx.Response) -> list[str]:
    html = (await env.client.get(response.headers["location"])).text
    return re.findall(r'<p class="notice notice-\w+ outcome" role="status">([^<]*)</p>', html)


async def test_retry_reports_what_became_of_each_job(env_any: Env) -> None:
    seeded = env_any.seeded
    ids = [seeded.failed.id, seeded.hostile.id, seeded.waiting.id, 999_999]
    response = await env_any.post("/jobs/selected", action="retry", next="/jobs?state=failed",
                                  id=[str(i) for i in ids])
    assert response.headers["location"].startswith("/jobs?state=failed&notice=selection&action=retry&")
    assert _query(response) == {"state": "failed", "notice": "selection", "action": "retry",
                                "retried": f"2:{seeded.failed.id},{seeded.hostile.id}",
                                "unfinished": f"1:{seeded.waiting.id}", "missing": "1:999999"}
    assert await state_of(env_any.engine, seeded.failed.id) is JobState.WAITING
    assert await state_of(env_any.engine, seeded.hostile.id) is JobState.WAITING
    waiting = await env_any.engine.get_job(seeded.waiting.id)
    assert waiting.available_at == seeded.waiting.available_at  # left as it was
    assert await _notices(env_any, response) == [
        f"Will run again now: 2 jobs: {seeded.failed.id}, {seeded.hostile.id}.",
        f"Not retried, as they have not finished: job {seeded.waiting.id}.",
        "No such job (deleted or pruned): job 999999.",
    ]


async def test_cancel_reports_finished_jobs_and_cancels_pending_ones(env_any: Env) -> None:
    seeded = env_any.seeded
    response = await env_any.post("/jobs/selected", action="cancel",
                                  id=[str(seeded.waiting.id), str(seeded.completed[0].id)])
    assert _query(response) == {"notice": "selection", "action": "cancel", "canceled": f"1:{seeded.waiting.id}",
                                "finished": f"1:{seeded.completed[0].id}"}
    assert await state_of(env_any.engine, seeded.waiting.id) is JobState.CANCELED
    assert await state_of(env_any.engine, seeded.completed[0].id) is JobState.COMPLETED


async def test_delete_asks_first_then_deletes_only_what_it_may(env_any: Env) -> None:
    seeded = env_any.seeded
    ids = [str(seeded.completed[0].id), str(seeded.failed.id)]
    asked = await env_any.post("/jobs/selected", action="delete", next="/jobs?state=failed",
                               id=ids)
    assert asked.status_code == 200 and "Delete 2 jobs for good?" in asked.text
    assert 'name="confirm" value="yes"' in asked.text and 'href="/jobs?state=failed">Back</a>' in asked.text
    assert all(f'<input type="hidden" name="id" value="{i}">' in asked.text for i in ids)
    assert await state_of(env_any.engine, seeded.failed.id) is JobState.FAILED  # asking changes nothing
    done = await env_any.post("/jobs/selected", action="delete", confirm="yes", id=[*ids, "77777"])
    assert _query(done) == {"notice": "selection", "action": "delete", "deleted": f"2:{ids[0]},{ids[1]}",
                            "missing": "1:77777"}
    assert await env_any.engine.get_job(seeded.failed.id) is None


async def test_running_jobs_are_stopped_and_held_ones_not_deleted(sqlite_url: str) -> None:
    jobs = make_jobs(sqlite_url)
    jobs.gate = asyncio.Event()
    async with jobs.engine.running():
        record = await jobs.send_email.enqueue("slow@example.com")
        await eventually(lambda: _is(jobs.engine, record.id, JobState.RUNNING))
        app = dashboard(jobs.engine)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
            env = Env(jobs, None, client)
            kept = await env.post("/jobs/selected", action="delete", confirm="yes", id=str(record.id))
            assert _query(kept)["held"] == f"1:{record.id}"
            listed = (await client.get("/jobs")).text
            row = listed[listed.index(f'<tr data-job-id="{record.id}">'):]
            assert f'action="/jobs/{record.id}/cancel"' in row[: row.index("</tr>")]  # cancel from the list
            stopped = await env.post("/jobs/selected", action="cancel", id=str(record.id))
            assert _query(stopped)["stopping"] == f"1:{record.id}"
            await eventually(lambda: _is(jobs.engine, record.id, JobState.CANCELED))


async def _is(engine, job_id: int, state: JobState) -> bool:
    return await state_of(engine, job_id) is state


async def test_bad_selections_get_clear_answers_and_change_nothing(env: Env) -> None:
    failed = str(env.seeded.failed.id)
    empty = await env.post("/jobs/selected", action="retry", next="/jobs")
    assert empty.headers["location"] == "/jobs?notice=selection-empty"
    page = (await env.client.get(empty.headers["location"])).text
    assert "No job was selected: tick the jobs to act on, then choose the action." in page
    for fields, status, message in (
        ({"action": "wipe", "id": failed}, 400, "Unknown action &#39;wipe&#39; on the selected jobs"),
        ({"id": failed}, 400, "Unknown action &#39;&#39;"),
        ({"action": "retry", "id": "abc"}, 400, "job id must be a whole number, got &#39;abc&#39;"),
        ({"action": "retry", "id": "0"}, 400, "job id must be between 1 and"),
        ({"action": "retry", "id": [str(i) for i in range(1, 502)]}, 400, "At most 500 jobs can be acted on at "
                                                                          "once, got 501."),
    ):
        response = await env.post("/jobs/selected", **fields)
        assert response.status_code == status and message in response.text, (fields, response.text[-600:])
    assert await state_of(env.engine, env.seeded.failed.id) is JobState.FAILED
    # The same id twice is one job, acted on once.
    twice = await env.post("/jobs/selected", action="retry", id=[failed, failed])
    assert _query(twice)["retried"] == f"1:{failed}"


async def test_a_selection_without_the_token_or_in_read_only_mode_is_refused(env: Env, sqlite_url: str) -> None:
    failed = str(env.seeded.failed.id)
    await env.token()
    forged = await env.client.post("/jobs/selected", data={"action": "retry", "id": failed, "csrf_token": "forged"})
    missing = await env.client.post("/jobs/selected", data={"action": "delete", "id": failed, "confirm": "yes"})
    for response in (forged, missing):
        assert response.status_code == 403 and "CSRF" in response.text
    assert await state_of(env.engine, env.seeded.failed.id) is JobState.FAILED
    app = dashboard(env.engine, read_only=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        html = (await client.get("/jobs")).text
        assert 'id="selection"' not in html and 'form="selection"' not in html
        token = client.cookies["aiojobs_csrf"]
        refused = await client.post("/jobs/selected", data={"action": "retry", "id": failed, "csrf_token": token})
        assert refused.status_code == 403
    assert await state_of(env.engine, env.seeded.failed.id) is JobState.FAILED


async def test_many_ids_are_counted_and_the_first_ones_named(env: Env) -> None:
    more = [await env.jobs.add.options(delay=3600).enqueue(i, i) for i in range(25)]
    response = await env.post("/jobs/selected", action="cancel", id=[str(r.id) for r in more])
    query = _query(response)
    count, listed = query["canceled"].split(":")
    assert count == "25" and listed.split(",") == [str(r.id) for r in more[:20]]
    [notice] = await _notices(env, response)
    assert notice.startswith(f"Canceled: 25 jobs: {more[0].id}, ") and notice.endswith(" and 5 more.")


async def test_an_outcome_link_cannot_make_the_page_say_anything(env: Env) -> None:
    html = (await env.client.get("/jobs", params={"notice": "selection", "action": "retry",
                                                  "retried": "1:<b>x</b>", "missing": "2:5,6"})).text
    assert "<b>x</b>" not in html and "&lt;b&gt;" not in html
    assert "No such job (deleted or pruned): 2 jobs: 5, 6." in html
    assert "notice-warn outcome" not in (await env.client.get("/jobs", params={"notice": "selection", "action": "nuke",
                                                                    "missing": "1:5"})).text
    # The page's own forms come back to the list without the outcome.
    assert 'name="next" value="/jobs?state=failed"' in (await env.client.get(
        "/jobs", params={"state": "failed", "notice": "selection", "action": "retry", "retried": "1:5"})).text
