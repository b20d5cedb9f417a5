"""``engine.list_jobs(search=...)``: finding jobs by what is inside their arguments and meta."""

from __future__ import annotations

import pytest

from aiojobs_engine import ConfigurationError


async def test_search_finds_jobs_by_argument_and_meta_values(make_engine) -> None:
    engine = make_engine()

    @engine.job
    async def invoice(customer: str, amount: int, *, currency: str = "EUR") -> None: ...

    async with engine:
        acme = await invoice.options(meta={"tenant": "ACME Corp"}).enqueue("c-17", 1200)
        globex = await invoice.enqueue("c-42", 99, currency="USD")
        assert acme is not None and globex is not None
        assert [j.id for j in await engine.list_jobs(search="acme")] == [acme.id]
        assert [j.id for j in await engine.list_jobs(search="usd")] == [globex.id]  # kwargs too
        assert [j.id for j in await engine.list_jobs(search="c-")] == [globex.id, acme.id]
        assert [j.id for j in await engine.list_jobs(search="c-", limit=1)] == [globex.id]
        assert [j.id for j in await engine.list_jobs(search="120", state="waiting")] == [acme.id]
        assert await engine.list_jobs(search="120", state="failed") == []
        assert len(await engine.list_jobs(search="")) == 2  # no search


@pytest.mark.parametrize(("search", "message"), [
    ("x" * 201, "search must be at most 200 characters, got 201"),
    ("a\x00b", "search must not contain the NUL character"),
    (42, "search must be a string, got 42"),
])
async def test_a_bad_search_is_refused_before_any_query(make_engine, search: object, message: str) -> None:
    engine = make_engine()
    async with engine:
        with pytest.raises(ConfigurationError, match=message):
            await engine.list_jobs(search=search)  # type: ignore[arg-type]
