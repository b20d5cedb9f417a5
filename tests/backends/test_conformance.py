"""The conformance suite, run against both built-in backends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aiojobs_engine._backends import Backend, make_backend
from aiojobs_engine._url import parse_url
from aiojobs_engine.conformance import BackendConformance


async def _open(url: str) -> Backend:
    backend = make_backend(parse_url(url))
    await backend.open()
    return backend


class TestBackends(BackendConformance):
    @pytest.fixture
    async def backend(self, db_url: str) -> AsyncIterator[Backend]:
        backend = await _open(db_url)
        await backend.migrate()
        yield backend
        await backend.close()

    @pytest.fixture
    async def second_backend(self, db_url: str, backend: Backend) -> AsyncIterator[Backend]:
        other = await _open(db_url)
        yield other
        await other.close()
