"""SQLite-specific behaviour: files, WAL, several connections, cancellation mid-transaction."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from aiojobs_engine import ConfigurationError, SchemaError
from aiojobs_engine._backends._protocol import JobClaim, QueueDemand
from aiojobs_engine._backends.sqlite import SQLiteBackend
from aiojobs_engine.conformance import T0, insert


async def opened(path: Path) -> SQLiteBackend:
    backend = SQLiteBackend(str(path))
    await backend.open()
    await backend.migrate()
    return backend


async def test_wal_mode_and_busy_timeout(tmp_path: Path) -> None:
    backend = await opened(tmp_path / "jobs.db")
    try:
        with closing(sqlite3.connect(tmp_path / "jobs.db")) as raw, raw:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        await backend.close()


async def test_cancelling_a_transaction_never_leaves_the_connection_inside_it(tmp_path: Path) -> None:
    """Regression: a cancellation during BEGIN used to leave the transaction open, so the
    connection's next statements were rolled back when it closed."""
    backend = await opened(tmp_path / "jobs.db")
    try:
        for round_ in range(60):
            task = asyncio.create_task(backend.job_claim(JobClaim(engine_id="e", demands=[QueueDemand("q", 5)])))
            for _ in range(round_ % 4):
                await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await backend.job_insert_many([insert()], now=T0)
    finally:
        await backend.close()
    with closing(sqlite3.connect(tmp_path / "jobs.db")) as raw, raw:
        assert raw.execute("SELECT count(*) FROM aiojobs_jobs").fetchone()[0] == 60


async def test_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    backend = SQLiteBackend(str(tmp_path / "nope" / "jobs.db"))
    with pytest.raises(ConfigurationError, match="does not exist"):
        await backend.open()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    backend = await opened(tmp_path / "jobs.db")
    await backend.close()
    with closing(sqlite3.connect(tmp_path / "jobs.db")) as raw, raw:
        raw.execute("INSERT INTO aiojobs_schema (version, name, applied_at) VALUES (999, 'future', 0)")
    backend = SQLiteBackend(str(tmp_path / "jobs.db"))
    await backend.open()
    try:
        with pytest.raises(SchemaError, match="newer than this aiojobs_engine knows"):
            await backend.migrate()
    finally:
        await backend.close()


async def test_concurrent_migrations_from_several_connections(tmp_path: Path) -> None:
    backends = [SQLiteBackend(str(tmp_path / "jobs.db")) for _ in range(4)]
    for backend in backends:
        await backend.open()
    try:
        applied = await asyncio.gather(*(b.migrate() for b in backends))
        assert sorted(map(len, applied)) == [0, 0, 0, backends[0].latest_version]
    finally:
        for backend in backends:
            await backend.close()
