"""Security, in process: CSRF, escaping, headers, read-only mode, authentication, mounting."""

from __future__ import annotations

import base64
import html as html_lib
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.requests import Request

from aiojobs_engine import ConfigurationError, Engine, JobState
from aiojobs_engine.dashboard import dashboard
from aiojobs_engine.dashboard._app import CONTENT_SECURITY_POLICY
from aiojobs_engine.dashboard._csrf import CsrfSigner

from ._support import HOSTILE_ARG, HOSTILE_MESSAGE, make_jobs, seed, state_of
from .conftest import BASE, Env, _env

# -- CSRF -----------------------------------------------------------------------------------


async def test_an_action_without_the_token_is_refused(env: Env) -> None:
    job = env.seeded.failed
    await env.token()  # the browser has the cookie: a cross-site form would send it
    for fields in ({}, {"csrf_token": ""}, {"csrf_token": "forged.value"}):
        response = await env.client.post(f"/jobs/{job.id}/retry", data=fields)
        assert response.status_code == 403, fields
        assert "CSRF" in response.text
    assert await state_of(env.engine, job.id) is JobState.FAILED


async def test_an_action_without_the_cookie_is_refused(env: Env) -> None:
    job = env.seeded.failed
    token = await env.token()
    env.client.cookies.clear()
    response = await env.client.post(f"/jobs/{job.id}/retry", data={"csrf_token": token})
    assert response.status_code == 403
    assert await state_of(env.engine, job.id) is JobState.FAILED


async def test_a_planted_cookie_signed_with_another_key_is_refused(env: Env) -> None:
    """An attacker who can set a cookie (a sibling subdomain) still cannot sign one."""
    job = env.seeded.failed
    planted = CsrfSigner(b"another key of sufficient length").issue()
    env.client.cookies.set("aiojobs_csrf", planted)
    response = await env.client.post(f"/jobs/{job.id}/retry", data={"csrf_token": planted})
    assert response.status_code == 403
    assert await state_of(env.engine, job.id) is JobState.FAILED


async def test_the_token_may_come_in_a_header_for_scripts(env: Env) -> None:
    job = env.seeded.failed
    token = await env.token()
    response = await env.client.post(f"/jobs/{job.id}/retry", headers={"X-CSRF-Token": token})
    assert response.status_code == 303
    assert await state_of(env.engine, job.id) is JobState.WAITING


async def test_the_csrf_cookie_is_strict_and_hidden_from_scripts(env: Env) -> None:
    env.client.cookies.clear()
    response = await env.client.get("/")
    cookie = response.headers["set-cookie"].lower()
    assert cookie.startswith("aiojobs_csrf=")
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    token = env.client.cookies["aiojobs_csrf"]
    assert f'name="csrf_token" value="{token}"' in response.text
    again = await env.client.get("/jobs")
    assert "set-cookie" not in again.headers  # a valid cookie is kept


async def test_a_form_body_that_is_too_large_is_refused(env: Env) -> None:
    token = await env.token()
    response = await env.client.post(f"/jobs/{env.seeded.failed.id}/retry",
                                     data={"csrf_token": token, "padding": "x" * 20_000})
    assert response.status_code == 413


def test_signer_rejects_short_keys_and_accepts_only_its_own_tokens() -> None:
    with pytest.raises(ConfigurationError, match="at least 16 bytes"):
        CsrfSigner("short")
    signer = CsrfSigner("a key of quite some length")
    token = signer.issue()
    assert signer.check(token, token)
    assert CsrfSigner("a key of quite some length").check(token, token)  # same key, another process
    assert not signer.check(token, token + "x")
    assert not signer.check(None, token) and not signer.check(token, None)
    assert not signer.is_valid("no-signature") and not signer.is_valid("é.é")


# -- escaping and headers -----------------------------------------------------------------------


async def test_hostile_arguments_and_errors_are_shown_as_text(env: Env) -> None:
    job = env.seeded.hostile
    pages = [(await env.client.get(path)).text for path in (f"/jobs/{job.id}", "/jobs", "/jobs?state=failed")]
    for page in pages:
        assert "<script>window" not in page and "<img src=x" not in page
    detail = pages[0]
    assert html_lib.escape(HOSTILE_MESSAGE, quote=False) in detail or "&lt;img src=x onerror=" in detail
    assert "&lt;script&gt;window.__pwned = &#39;args&#39;&lt;/script&gt;" in detail
    assert html_lib.unescape(detail).count(HOSTILE_ARG) >= 2  # the arguments, the error, the traceback


async def test_every_response_carries_the_security_headers(env: Env) -> None:
    for path in ("/", "/jobs/1", "/jobs/999999", "/nowhere", "/static/dashboard.js", "/static/dashboard.css"):
        response = await env.client.get(path)
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY and "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert (await env.client.get("/")).headers["cache-control"] == "no-store"


async def test_static_files_are_served_with_their_types(env: Env) -> None:
    script = await env.client.get("/static/dashboard.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "data-confirm" in script.text
    assert "text/css" in (await env.client.get("/static/dashboard.css")).headers["content-type"]
    assert (await env.client.get("/static/../_app.py")).status_code == 404


# -- read-only ---------------------------------------------------------------------------------


@pytest.fixture
async def read_only(sqlite_url: str) -> AsyncIterator[Env]:
    async for value in _env(sqlite_url, read_only=True):
        yield value


async def test_read_only_shows_no_action_and_refuses_every_one(read_only: Env) -> None:
    seeded = read_only.seeded
    for path in ("/", "/jobs", f"/jobs/{seeded.failed.id}", f"/jobs/{seeded.waiting.id}", "/engines", "/schedules"):
        page = (await read_only.client.get(path)).text
        assert 'method="post"' not in page, path
        assert "read-only" in page
    token = await read_only.token()
    for path, fields in ((f"/jobs/{seeded.failed.id}/retry", {}), (f"/jobs/{seeded.waiting.id}/cancel", {}),
                         (f"/jobs/{seeded.failed.id}/delete", {}), ("/queues/email/pause", {}),
                         ("/queues/email/concurrency", {"concurrency": "2"}),
                         ("/queues/email/per-key", {"per_key": "2", "rate_per_key": "none"}),
                         ("/queues/default/failed/delete", {"confirm": "yes"})):
        response = await read_only.client.post(path, data={"csrf_token": token, **fields})
        assert response.status_code == 403 and "read-only" in response.text, path
    assert (await read_only.client.get("/queues/default/failed/retry")).status_code == 403
    assert await state_of(read_only.engine, seeded.failed.id) is JobState.FAILED
    assert await state_of(read_only.engine, seeded.waiting.id) is JobState.WAITING
    assert not any(q.paused for q in await read_only.engine.list_queues())


async def test_read_only_shows_the_queue_limits_as_text(read_only: Env) -> None:
    await read_only.engine.set_queue("email", rate_limit=(20, 1.0), concurrency_per_key=2, rate_limit_per_key=(5, 1.0))
    html = (await read_only.client.get("/")).text
    email = html[html.index('data-queue="email"'):]
    email = " ".join(email[: email.index("</tr>")].split())
    assert '<td class="num rate"> 20/1s </td>' in email and '<td class="num per-key"> 2 at once, 5/1s </td>' in email


# -- authentication ------------------------------------------------------------------------------


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_basic_auth_asks_for_credentials_everywhere(sqlite_url: str) -> None:
    async for env in _env(sqlite_url, basic_auth=("ops", "s3cret:with:colons")):
        for path in ("/", "/jobs", "/static/dashboard.js", "/nowhere"):
            refused = await env.client.get(path)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"].startswith('Basic realm="aiojobs dashboard"')
            assert refused.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        for headers in (_basic("ops", "wrong"), _basic("admin", "s3cret:with:colons"), {"Authorization": "Basic !!"},
                        {"Authorization": "Bearer x"}):
            assert (await env.client.get("/", headers=headers)).status_code == 401
        env.client.headers.update(_basic("ops", "s3cret:with:colons"))
        assert (await env.client.get("/")).status_code == 200
        response = await env.post(f"/jobs/{env.seeded.failed.id}/retry")
        assert response.status_code == 303


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_a_host_applications_own_check_decides(sqlite_url: str, kind: str) -> None:
    def allowed(request: Request) -> bool:
        return request.headers.get("x-user") == "alice"

    async def allowed_async(request: Request) -> bool:
        return allowed(request)

    check: Any = allowed_async if kind == "async" else allowed
    async for env in _env(sqlite_url, auth=check):
        denied = await env.client.get("/")
        assert denied.status_code == 403 and "not allowed" in denied.text
        assert (await env.client.get("/", headers={"x-user": "bob"})).status_code == 403
        env.client.headers["x-user"] = "alice"
        assert (await env.client.get("/")).status_code == 200


@pytest.mark.parametrize("bad", [("user",), ("", "pw"), ("us:er", "pw"), ("user", ""), "user:pw", ("u", 1)])
def test_bad_settings_are_refused_at_once(bad: Any) -> None:
    with pytest.raises(ConfigurationError):
        dashboard(Engine(), basic_auth=bad)


def test_other_bad_arguments_are_refused_at_once() -> None:
    with pytest.raises(ConfigurationError, match="auth must be a callable"):
        dashboard(Engine(), auth="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"takes an aiojobs_engine\.Engine"):
        dashboard("sqlite:///x.db")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="read_only"):
        dashboard(Engine(), read_only="no")  # type: ignore[arg-type]


# -- host names (DNS rebinding) and the origin of actions -----------------------------------------------

LOOPBACK = ["localhost", "127.0.0.1", "::1"]  # what `aiojobs dashboard` allows on a loopback address


async def _paused(engine: Engine) -> set[str]:
    return {q.name for q in await engine.list_queues() if q.paused}


async def test_a_rebinding_page_gets_a_400_and_neither_the_page_nor_the_token(sqlite_url: str) -> None:
    """A page on evil.example rebound to 127.0.0.1 talks to the dashboard as its own origin:
    the browser sends Host: evil.example, and that is all it gets refused for."""
    async for env in _env(sqlite_url):
        transport = httpx.ASGITransport(app=dashboard(env.engine, allowed_hosts=LOOPBACK))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8686") as client:
            evil = {"Host": "evil.example:8686"}
            refused = await client.get("/", headers=evil)
            assert refused.status_code == 400 and "Invalid host header" in refused.text
            assert "set-cookie" not in refused.headers and "csrf_token" not in refused.text
            assert refused.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            assert (await client.get(f"/jobs/{env.seeded.hostile.id}", headers=evil)).status_code == 400
            page = await client.get("/")  # the real name: the page, and the cookie
            assert page.status_code == 200
            token = client.cookies["aiojobs_csrf"]
            attack = await client.post("/queues/email/pause", headers=evil, data={"csrf_token": token})
            assert attack.status_code == 400
            assert await _paused(env.engine) == set()
            for host in ("localhost:8686", "LOCALHOST.:1234", "127.0.0.1", "[::1]:8686", "[0:0::1]"):
                assert (await client.get("/jobs", headers={"Host": host})).status_code == 200, host
            for host in ("", "127.0.0.1.evil.example", "localhost:port", "[::1", "evil.example", "127.0.0.2"):
                assert (await client.get("/jobs", headers={"Host": host})).status_code == 400, host


async def test_the_host_check_comes_before_authentication(sqlite_url: str) -> None:
    """No password prompt for a rebinding page: a 400, not a 401 with a challenge."""
    async for env in _env(sqlite_url, allowed_hosts=["dashboard.test"], basic_auth=("ops", "pw")):
        refused = await env.client.get("/", headers={"Host": "evil.example"})
        assert refused.status_code == 400 and "www-authenticate" not in refused.headers
        assert (await env.client.get("/")).status_code == 401
        assert (await env.client.get("/", headers=_basic("ops", "pw"))).status_code == 200


async def test_wildcards_and_any_host(sqlite_url: str) -> None:
    async for env in _env(sqlite_url, allowed_hosts=["*.example.com", "ops.internal"]):
        for host, status in (("jobs.example.com", 200), ("a.b.example.com:443", 200), ("example.com", 400),
                             ("evilexample.com", 400), ("ops.internal:8686", 200), ("dashboard.test", 400)):
            assert (await env.client.get("/", headers={"Host": host})).status_code == status, host
    async for env in _env(sqlite_url, allowed_hosts=["*"]):
        assert (await env.client.get("/", headers={"Host": "anything.at.all"})).status_code == 200


async def test_with_allowed_hosts_an_action_from_another_origin_is_refused(sqlite_url: str) -> None:
    """Defence in depth behind the CSRF token: even with the token, a POST whose Origin (or
    Referer) is not an allowed host is a 403."""
    async for env in _env(sqlite_url, allowed_hosts=["dashboard.test", "localhost"]):
        token = await env.token()
        for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                        {"Referer": "http://evil.example/page"}, {"Origin": "http://evil.example",
                                                                   "Referer": f"{BASE}/"}):
            refused = await env.client.post("/queues/email/pause", data={"csrf_token": token}, headers=headers)
            assert refused.status_code == 403 and "allowed hosts" in refused.text, headers
        assert await _paused(env.engine) == set()
        for headers in ({"Origin": BASE}, {"Origin": "http://localhost:9000"}, {"Referer": f"{BASE}/jobs?x=1"}, {}):
            accepted = await env.client.post("/queues/email/pause", data={"csrf_token": token}, headers=headers)
            assert accepted.status_code == 303, headers
        assert await _paused(env.engine) == {"email"}


async def test_without_allowed_hosts_there_is_no_host_check(env: Env) -> None:
    """The default for a dashboard mounted in an application, which decides how it is reached."""
    assert (await env.client.get("/", headers={"Host": "whatever.example"})).status_code == 200
    token = await env.token()
    response = await env.client.post("/queues/email/pause", data={"csrf_token": token},
                                     headers={"Origin": "http://whatever.example"})
    assert response.status_code == 303  # the CSRF token decides


async def test_mounted_with_allowed_hosts_only_the_dashboard_checks(sqlite_url: str) -> None:
    jobs = make_jobs(sqlite_url)
    host = FastAPI()
    host.mount("/ops/jobs", dashboard(jobs.engine, allowed_hosts=["dashboard.test"]))

    @host.get("/")
    async def home() -> dict[str, str]:
        return {"app": "host"}

    async with jobs.engine, httpx.AsyncClient(transport=httpx.ASGITransport(app=host), base_url=BASE) as client:
        other = {"Host": "api.example"}
        assert (await client.get("/", headers=other)).json() == {"app": "host"}  # the host app's own routes
        assert (await client.get("/ops/jobs/", headers=other)).status_code == 400
        assert (await client.get("/ops/jobs/")).status_code == 200


@pytest.mark.parametrize("bad, message", [
    ("localhost", "must be a list of host names"),
    ([], "at least one host"),
    ([""], "non-empty strings"),
    (["example.com:8080"], "without a port"),
    (["a b"], "is not a host name"),
    (["ex*ample.com"], "is not a host name"),
    ([42], "non-empty strings"),
])
def test_bad_allowed_hosts_are_refused_at_once(bad: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        dashboard(Engine(), allowed_hosts=bad)


# -- mounting, and the engine's lifecycle -----------------------------------------------------------------


async def test_mounted_in_fastapi_every_link_and_action_keeps_the_prefix(sqlite_url: str) -> None:
    jobs = make_jobs(sqlite_url)
    host = FastAPI()
    host.mount("/ops/jobs", dashboard(jobs.engine))

    @host.get("/")
    async def home() -> dict[str, str]:
        return {"app": "host"}

    async with jobs.engine:
        seeded = await seed(jobs)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=host), base_url=BASE) as client:
            assert (await client.get("/")).json() == {"app": "host"}
            page = await client.get("/ops/jobs/")
            assert page.status_code == 200
            assert "path=/ops/jobs" in page.headers["set-cookie"].lower()
            links = [link for link in re.findall(r'(?:href|action|src)="([^"]+)"', page.text) if link != "data:,"]
            assert links and all(link.startswith("/ops/jobs/") for link in links), links
            detail = (await client.get(f"/ops/jobs/jobs/{seeded.failed.id}")).text
            actions = re.findall(r'action="([^"]+)"', detail)
            assert f"/ops/jobs/jobs/{seeded.failed.id}/retry" in actions
            assert 'name="next" value="/ops/jobs/jobs/' in detail
            token = client.cookies["aiojobs_csrf"]
            response = await client.post(f"/ops/jobs/jobs/{seeded.failed.id}/retry",
                                         data={"csrf_token": token, "next": "/elsewhere"})
            assert response.status_code == 303
            assert response.headers["location"].startswith(f"/ops/jobs/jobs/{seeded.failed.id}?notice=retried")
            assert await state_of(jobs.engine, seeded.failed.id) is JobState.WAITING
            assert (await client.get("/ops/jobs/static/dashboard.js")).status_code == 200


async def test_behind_a_proxy_links_follow_the_root_path(env: Env) -> None:
    """What uvicorn --root-path (aiojobs dashboard --root-path) gives the app."""
    app = dashboard(env.engine)
    transport = httpx.ASGITransport(app=app, root_path="/proxy")
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        page = await client.get("/proxy/jobs")
        assert page.status_code == 200
        links = [link for link in re.findall(r'(?:href|action|src)="([^"]+)"', page.text) if link != "data:,"]
        assert links and all(link.startswith("/proxy/") for link in links), links


async def test_a_closed_engine_is_a_clear_503(sqlite_url: str) -> None:
    app = dashboard(Engine(sqlite_url))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        response = await client.get("/")
    assert response.status_code == 503 and "engine is closed" in response.text


async def test_served_on_its_own_the_dashboard_opens_and_closes_its_engine(sqlite_url: str) -> None:
    engine = Engine(sqlite_url)
    app = dashboard(engine)
    async with app.router.lifespan_context(app):  # what uvicorn runs around serving
        assert engine.is_open
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
            assert (await client.get("/")).status_code == 200
    assert not engine.is_open
