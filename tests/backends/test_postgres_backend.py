"""PostgreSQL-specific behaviour of the backend, on a real server (no mocks).

The shared behaviour is in the conformance suite; here: the schema option, concurrent
migrations, LISTEN/NOTIFY, transactional enqueue, dead connections, exact global caps
across backends, and the claim's query plan.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from aiojobs_engine._backends._protocol import ClaimToStop, JobClaim, JobInsert, JobStart, QueueChange, QueueDemand
from aiojobs_engine._backends.postgres import PostgresBackend
from aiojobs_engine._backends.postgres._sql import compile_query, queries_for
from aiojobs_engine._errors import BackendError, BackendUnavailableError, ConfigurationError, SchemaError
from aiojobs_engine._records import JobState
from aiojobs_engine._url import parse_url
from aiojobs_engine.conformance import KEEP, T0, claim, insert, running, unique
from tests._waiting import eventually

pytestmark = pytest.mark.postgres

TABLES = {"aiojobs_jobs", "aiojobs_queues", "aiojobs_engines", "aiojobs_schema", "aiojobs_cron", "aiojobs_rate_windows"}


def _split(url: str) -> tuple[str, str]:
    parsed = parse_url(url)
    assert parsed.dsn is not None and parsed.schema is not None
    return parsed.dsn, parsed.schema


@pytest.fixture
async def admin(postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the test database, outside any backend."""
    dsn, _ = _split(postgres_url)
    conn = await asyncpg.connect(dsn)
    yield conn
    await conn.close()


@pytest.fixture
async def backend(postgres_url: str) -> AsyncIterator[PostgresBackend]:
    dsn, schema = _split(postgres_url)
    b = PostgresBackend(dsn, schema=schema)
    await b.open()
    await b.migrate()
    yield b
    await b.close()


class Inbox:
    """Collects notifications; waits for a given one without sleeping."""

    def __init__(self) -> None:
        self.payloads: list[str] = []
        self._changed = asyncio.Event()

    def __call__(self, payload: str) -> None:
        self.payloads.append(payload)
        self._changed.set()

    async def wait_for(self, payload: str, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while payload not in self.payloads:
                self._changed.clear()
                await self._changed.wait()

    async def fence(self, backend: PostgresBackend, marker: str = "fence") -> list[str]:
        """Everything notified before now: notifications arrive in commit order, so once a
        later transaction's notification is here, every earlier one is too."""
        await backend.queue_upsert(QueueChange(name=marker), now=T0)
        await self.wait_for(f"queue:{marker}")
        received = self.payloads[: self.payloads.index(f"queue:{marker}")]
        self.payloads.clear()
        return received


async def _listen(backend: PostgresBackend) -> tuple[Inbox, Any]:
    inbox = Inbox()
    listener = await backend.listen(inbox)
    return inbox, listener


async def _pids(admin: asyncpg.Connection, application_name: str) -> list[int]:
    rows = await admin.fetch(
        "SELECT pid FROM pg_stat_activity WHERE application_name LIKE $1 AND datname = current_database()",
        application_name,
    )
    return [row["pid"] for row in rows]


async def _until_gone(admin: asyncpg.Connection, application_name: str) -> None:
    """A closed connection's server process exits a moment after the client hangs up."""
    async def gone() -> bool:
        return not await _pids(admin, application_name)

    await eventually(gone, message=f"the server processes of {application_name} gone")


async def _until_all_idle(admin: asyncpg.Connection, schema: str) -> None:
    """Until none of our sessions is running a statement or sitting in a transaction."""
    async def idle() -> bool:
        return not await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1 "
                                        "AND state <> 'idle'", f"aiojobs:{schema}:%")

    await eventually(idle, message="our sessions idle")


async def _relations(admin: asyncpg.Connection, schema: str) -> set[str]:
    rows = await admin.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1",
        schema,
    )
    return {row["relname"] for row in rows}


# -- schema ----------------------------------------------------------------------------------


async def test_tables_live_in_the_given_schema_and_nothing_in_public(
    postgres_url: str, admin: asyncpg.Connection
) -> None:
    dsn, schema = _split(postgres_url)
    public_before = await _relations(admin, "public")
    b = PostgresBackend(dsn, schema=schema)
    await b.open()
    try:
        assert await b.schema_version() == 0
        assert await b.migrate() == list(range(1, b.latest_version + 1))
        assert await b.schema_version() == b.latest_version
        (job,) = await b.job_insert_many([insert(queue="mail")], now=T0)
    finally:
        await b.close()
    tables = await admin.fetch("SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema)
    assert {row["table_name"] for row in tables} == TABLES
    indexes = {row["indexname"]: row["indexdef"] for row in await admin.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1", schema
    )}
    assert "WHERE (state = ANY (ARRAY['waiting'::text, 'snoozed'::text]))" in indexes["aiojobs_jobs_claim"]
    assert "(queue, priority, available_at, id)" in indexes["aiojobs_jobs_claim"]
    assert {"aiojobs_jobs_held", "aiojobs_jobs_state"} <= set(indexes)
    assert await _relations(admin, "public") == public_before
    assert "aiojobs_jobs_id_seq" in await _relations(admin, schema)  # the identity's sequence too
    stored = await admin.fetchrow(f'SELECT queue, claim_token FROM "{schema}".aiojobs_jobs WHERE id = $1', job.id)
    assert stored is not None and stored["queue"] == "mail"
    types = {row["column_name"]: row["data_type"] for row in await admin.fetch(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 "
        "AND table_name = 'aiojobs_jobs'", schema,
    )}
    assert types["args"] == "jsonb" and types["errors"] == "jsonb" and types["claim_token"] == "uuid"
    assert types["available_at"] == "timestamp with time zone" and types["id"] == "bigint"


async def test_concurrent_migrations_apply_each_version_once(postgres_url: str, admin: asyncpg.Connection) -> None:
    dsn, schema = _split(postgres_url)
    backends = [PostgresBackend(dsn, schema=schema) for _ in range(5)]
    for b in backends:
        await b.open()
    try:
        results = await asyncio.gather(*(b.migrate() for b in backends))
    finally:
        for b in backends:
            await b.close()
    everything = list(range(1, backends[0].latest_version + 1))
    assert sorted(results) == [[]] * 4 + [everything]
    rows = await admin.fetch(f'SELECT version FROM "{schema}".aiojobs_schema ORDER BY version')
    assert [row["version"] for row in rows] == everything


async def test_a_newer_schema_is_refused(backend: PostgresBackend, admin: asyncpg.Connection) -> None:
    await admin.execute(
        f'INSERT INTO "{backend.schema}".aiojobs_schema (version, name) VALUES ($1, $2)',
        backend.latest_version + 1, "from_the_future",
    )
    with pytest.raises(SchemaError, match="newer than this aiojobs_engine knows"):
        await backend.migrate()
    assert await backend.schema_version() == backend.latest_version + 1


def test_invalid_schema_names_are_refused_before_any_io() -> None:
    with pytest.raises(ConfigurationError, match="schema must be"):
        PostgresBackend("postgresql://nowhere/db", schema='x"; DROP TABLE y; --')


def test_parameters_compile_to_positions_outside_literals_and_casts() -> None:
    query = compile_query("q", "SELECT :a::int, ':b', \"c:d\", :e -- :f\n, :a, x::text")
    assert query.sql == "SELECT $1::int, ':b', \"c:d\", $2 -- :f\n, $1, x::text"
    assert query.params == ("a", "e")


# -- notifications -----------------------------------------------------------------------------


async def test_enqueue_notifies_once_per_queue_per_transaction(backend: PostgresBackend) -> None:
    inbox, listener = await _listen(backend)
    try:
        await backend.job_insert_many([insert(queue="a"), insert(queue="b"), insert(queue="a"), insert(queue="a")],
                                      now=T0)
        assert sorted(await inbox.fence(backend)) == ["enqueued:a", "enqueued:b"]
        await backend.job_insert_many([insert(queue="c")], now=T0)  # the single-row statement
        await backend.job_insert_many([insert(queue="c")], now=T0)  # another transaction
        assert await inbox.fence(backend) == ["enqueued:c", "enqueued:c"]
    finally:
        await listener.close()


async def test_cancel_of_a_running_job_and_queue_changes_notify(backend: PostgresBackend) -> None:
    (job,) = await running(backend, insert())
    (pending,) = await backend.job_insert_many([insert(queue="other")], now=T0)
    inbox, listener = await _listen(backend)
    try:
        await backend.job_cancel(retention=KEEP, job_id=pending.id, now=T0)  # not running: canceled at once, no message
        await backend.job_cancel(retention=KEEP, job_id=job.id, now=T0)
        await backend.queue_upsert(QueueChange(name="mail", paused=True), now=T0)
        assert await inbox.fence(backend) == [f"cancel:{job.id}", "queue:mail"]
    finally:
        await listener.close()


async def test_rescue_notifies_the_queues_given_a_job_back(backend: PostgresBackend) -> None:
    await backend.job_insert_many([insert(queue="a"), insert(queue="a"), insert(queue="b"),
                                   insert(queue="spent", max_attempts=1), insert(queue="canceled")], now=T0)
    held = await backend.job_claim(claim("gone", ("a", 9), ("b", 9), ("spent", 9), ("canceled", 9)))
    ends = [r for r in held if r.queue in ("spent", "canceled")]
    await backend.job_start_many([JobStart(r.id, r.claim_token or "") for r in ends], now=T0)
    await backend.job_cancel(retention=KEEP, job_id=next(r.id for r in ends if r.queue == "canceled"), now=T0)
    inbox, listener = await _listen(backend)
    try:
        result = await backend.job_rescue(retention=KEEP, stale_after=10, now=T0)
        assert len(result.retried) == 3
        assert [j.state for j in result.failed] == [JobState.FAILED]
        assert [j.state for j in result.canceled] == [JobState.CANCELED]
        # Failed and canceled jobs wake nobody; a second pass rescues nothing and says nothing.
        assert sorted(await inbox.fence(backend)) == ["enqueued:a", "enqueued:b"]
        assert (await backend.job_rescue(retention=KEEP, stale_after=10, now=T0)).retried == []
        assert await inbox.fence(backend) == []
    finally:
        await listener.close()


async def test_listener_ignores_other_schemas(
    postgres_url: str, backend: PostgresBackend, admin: asyncpg.Connection
) -> None:
    dsn, _ = _split(postgres_url)
    other = PostgresBackend(dsn, schema=f"{backend.schema}_other")
    await other.open()
    inbox, listener = await _listen(backend)
    try:
        await other.migrate()
        await other.job_insert_many([insert(queue="elsewhere")], now=T0)
        await backend.job_insert_many([insert(queue="here")], now=T0)
        assert await inbox.fence(backend) == ["enqueued:here"]
    finally:
        await listener.close()
        await other.close()
        await admin.execute(f'DROP SCHEMA IF EXISTS "{other.schema}" CASCADE')


# -- transactional enqueue ----------------------------------------------------------------------


async def test_enqueue_in_a_rolled_back_transaction_leaves_nothing(
    backend: PostgresBackend, postgres_url: str
) -> None:
    dsn, _ = _split(postgres_url)
    inbox, listener = await _listen(backend)
    conn = await asyncpg.connect(dsn)
    try:
        tx = conn.transaction()
        await tx.start()
        (record,) = await backend.job_insert_many([insert(queue="tx")], now=T0, connection=conn)
        assert record.state is JobState.WAITING and record.queue == "tx"
        await tx.rollback()
        assert await backend.job_get(record.id) is None
        assert await backend.job_count() == {}
        assert "tx" not in {q.name for q in await backend.queue_list()}  # its registration too
        assert await inbox.fence(backend) == []
    finally:
        await conn.close()
        await listener.close()


async def test_enqueue_in_a_committed_transaction_appears_at_commit(
    backend: PostgresBackend, postgres_url: str
) -> None:
    dsn, _ = _split(postgres_url)
    inbox, listener = await _listen(backend)
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            records = await backend.job_insert_many([insert(queue="tx"), insert(queue="tx")], now=T0,
                                                    connection=conn)
            assert await backend.job_get(records[0].id) is None  # not committed yet
            assert await inbox.fence(backend) == []  # and nobody was told
        assert [r.id for r in await backend.job_claim(claim("e1", ("tx", 10)))] == [r.id for r in records]
        assert await inbox.fence(backend) == ["enqueued:tx"]
    finally:
        await conn.close()
        await listener.close()


async def test_a_replacing_enqueue_in_the_callers_transaction_is_all_or_nothing(
    backend: PostgresBackend, admin: asyncpg.Connection
) -> None:
    (holder,) = await backend.job_insert_many([unique("k")], now=T0)
    no_name: Any = None  # the insert fails (NOT NULL) after the cancel ran
    async with admin.transaction():
        await admin.execute("SELECT 1")
        with pytest.raises(BackendError):
            await backend.job_insert_many([dataclasses.replace(unique("k", replace=True), name=no_name)], now=T0,
                                          connection=admin)
        # Only our savepoint was rolled back: the caller's transaction goes on.
        (new,) = await backend.job_insert_many([unique("k", replace=True)], now=T0, connection=admin)
        current = await backend.job_get(holder.id)
        assert current is not None and current.state is JobState.WAITING  # not committed yet
    replaced = await backend.job_get(holder.id)
    assert replaced is not None and replaced.state is JobState.CANCELED
    stored = await backend.job_get(new.id)
    assert stored is not None and stored.state is JobState.WAITING
    # Outside a transaction of the caller's, the connection gets one of its own.
    with pytest.raises(BackendError):
        await backend.job_insert_many([dataclasses.replace(unique("k", replace=True), name=no_name)], now=T0,
                                      connection=admin)
    assert not admin.is_in_transaction()
    still = await backend.job_get(new.id)
    assert still is not None and still.state is JobState.WAITING


async def test_enqueue_on_a_pooled_connection_with_its_own_jsonb_codec(
    backend: PostgresBackend, postgres_url: str
) -> None:
    dsn, _ = _split(postgres_url)

    async def init(conn: asyncpg.Connection) -> None:
        await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")

    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1, init=init)
    try:
        async with pool.acquire() as conn, conn.transaction():
            (record,) = await backend.job_insert_many([insert(args=[1, {"x": "y"}])], now=T0, connection=conn)
        assert record.args == [1, {"x": "y"}] and record.meta == {"tag": "x"} and record.errors == []
        assert await backend.job_get(record.id) == record
    finally:
        await pool.close()


async def test_enqueue_refuses_a_connection_that_is_not_asyncpg(backend: PostgresBackend) -> None:
    with pytest.raises(ConfigurationError, match="asyncpg connection"):
        await backend.job_insert_many([insert()], now=T0, connection=object())


# -- dead connections ------------------------------------------------------------------------


async def test_listener_check_fails_once_the_server_kills_its_connection(
    backend: PostgresBackend, admin: asyncpg.Connection
) -> None:
    inbox, listener = await _listen(backend)
    await listener.check()
    pids = await _pids(admin, f"aiojobs:{backend.schema}:listen")
    assert pids == [listener.server_pid]
    assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", pids[0])
    with pytest.raises(BackendUnavailableError):
        await listener.check()
    await listener.close()
    await listener.close()  # twice, on a dead connection: still fine
    inbox2, again = await _listen(backend)  # a new subscription works
    try:
        await backend.job_insert_many([insert(queue="back")], now=T0)
        await inbox2.wait_for("enqueued:back")
        assert inbox.payloads == []
    finally:
        await again.close()


async def test_closing_the_backend_closes_its_listeners(postgres_url: str, admin: asyncpg.Connection) -> None:
    dsn, schema = _split(postgres_url)
    b = PostgresBackend(dsn, schema=schema)
    await b.open()
    listeners = [await b.listen(lambda payload: None) for _ in range(2)]
    assert len(await _pids(admin, f"aiojobs:{schema}:listen")) == 2
    await b.close()
    await _until_gone(admin, f"aiojobs:{schema}:listen")
    await _until_gone(admin, f"aiojobs:{schema}:pool")
    for listener in listeners:
        with pytest.raises(BackendUnavailableError):
            await listener.check()
        await listener.close()


def _terminate_while_the_loop_is_blocked(dsn: str, pids: list[int]) -> None:
    """Kill server processes from another thread while this event loop is blocked, so
    that the backend's next call meets a dead connection it has not noticed yet."""

    async def kill() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for pid in pids:
                assert await conn.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
        finally:
            await conn.close()

    thread = threading.Thread(target=asyncio.run, args=(kill(),))
    thread.start()
    thread.join()  # blocks the loop on purpose


async def test_backend_recovers_after_its_connections_are_killed(
    backend: PostgresBackend, admin: asyncpg.Connection, postgres_url: str
) -> None:
    dsn, _ = _split(postgres_url)
    (job,) = await backend.job_insert_many([insert()], now=T0)
    for _ in range(3):
        await asyncio.gather(*(backend.job_get(job.id) for _ in range(6)))  # several pooled connections
        pids = await _pids(admin, f"aiojobs:{backend.schema}:pool")
        assert pids
        _terminate_while_the_loop_is_blocked(dsn, pids)
        try:
            await backend.job_get(job.id)
        except BackendUnavailableError:
            pass  # the first call may meet a dead connection; it must say so in our terms
        for _ in range(5):
            assert await backend.job_get(job.id) == job
        assert not set(pids) & set(await _pids(admin, f"aiojobs:{backend.schema}:pool"))


async def test_claims_have_a_connection_of_their_own_with_generic_plans_and_unflushed_commits(
    postgres_url: str, admin: asyncpg.Connection
) -> None:
    dsn, schema = _split(postgres_url)
    b = PostgresBackend(dsn, schema=schema)
    await b.open()
    try:
        await b.migrate()
        assert await _pids(admin, f"aiojobs:{schema}:claim") == []  # opened by the first claim
        await b.job_insert_many([insert()], now=T0)
        assert len(await b.job_claim(claim())) == 1
        (row,) = await admin.fetch("SELECT query FROM pg_stat_activity WHERE application_name = $1",
                                   f"aiojobs:{schema}:claim")
        assert row["query"].startswith("WITH picked AS MATERIALIZED")  # the claim statement
        async with b._db.claims("test") as tx:  # the setting the claim statement runs under
            assert await tx._conn.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
            assert await tx._conn.fetchval("SHOW synchronous_commit") == "off"
        async with b._db.claims("test", transaction=True) as tx:  # but a capped claim's commit is durable
            await tx.fetch("queue_lock_claims", {"keys": ["test-key"], "now": None})
            assert await tx._conn.fetchval("SHOW synchronous_commit") == "on"
        async with b._db.claims("test") as tx:  # for that transaction only
            assert await tx._conn.fetchval("SHOW synchronous_commit") == "off"
        async with b._db.transaction("test") as tx:  # and the pool keeps the server's defaults
            assert await tx._conn.fetchval("SHOW plan_cache_mode") == "auto"
            assert await tx._conn.fetchval("SHOW synchronous_commit") == await admin.fetchval("SHOW synchronous_commit")
    finally:
        await b.close()
    await _until_gone(admin, f"aiojobs:{schema}:claim")
    with pytest.raises(BackendError, match="not open"):
        await b.job_claim(claim())


async def test_claims_recover_after_their_connection_is_killed(
    backend: PostgresBackend, admin: asyncpg.Connection, postgres_url: str
) -> None:
    dsn, _ = _split(postgres_url)
    await backend.job_insert_many([insert() for _ in range(3)], now=T0)
    for _ in range(3):
        await backend.job_claim(claim("e1", ("default", 0)))
        pids = await _pids(admin, f"aiojobs:{backend.schema}:claim")
        assert len(pids) == 1
        _terminate_while_the_loop_is_blocked(dsn, pids)
        try:
            await backend.job_claim(claim("e1", ("default", 0)))
        except BackendUnavailableError:
            pass  # the first claim may meet the dead connection; it must say so in our terms
        assert len(await backend.job_claim(claim("e1", ("default", 1)))) == 1
        assert not set(pids) & set(await _pids(admin, f"aiojobs:{backend.schema}:claim"))


async def _lane_pid(backend: PostgresBackend) -> int | None:
    lane = backend._db._lane
    return None if lane is None else int(lane.get_server_pid())


async def test_enqueues_run_on_the_kept_lane_and_on_the_pool_when_it_is_busy(
    backend: PostgresBackend, admin: asyncpg.Connection
) -> None:
    schema = backend.schema
    assert await _lane_pid(backend) is None  # taken by the first enqueue
    await backend.job_insert_many([insert()], now=T0)
    lane = await _lane_pid(backend)
    assert lane in await _pids(admin, f"aiojobs:{schema}:pool")  # a connection of the pool
    assert "aiojobs_jobs" in await admin.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", lane)
    for _ in range(20):
        await backend.job_insert_many([insert()], now=T0)
    assert await _lane_pid(backend) == lane  # one after the other: all on the lane
    await asyncio.gather(*(backend.job_insert_many([insert()], now=T0) for _ in range(30)))  # busy: the pool too
    assert await _lane_pid(backend) == lane
    assert await admin.fetchval(f'SELECT count(*) FROM "{schema}".aiojobs_jobs') == 51
    await backend.close()
    await _until_gone(admin, f"aiojobs:{schema}:pool")  # the lane was given back and closed
    with pytest.raises(BackendError, match="not open"):
        await backend.job_insert_many([insert()], now=T0)


async def test_enqueues_recover_after_the_lane_is_killed(
    backend: PostgresBackend, admin: asyncpg.Connection, postgres_url: str
) -> None:
    dsn, _ = _split(postgres_url)
    for _ in range(3):
        await backend.job_insert_many([insert()], now=T0)
        lane = await _lane_pid(backend)
        assert lane is not None
        _terminate_while_the_loop_is_blocked(dsn, [lane])
        try:
            await backend.job_insert_many([insert()], now=T0)
        except BackendUnavailableError:
            pass  # the first enqueue may meet the dead connection; it must say so in our terms
        (job,) = await backend.job_insert_many([insert(queue="after")], now=T0)
        assert await backend.job_get(job.id) == job
        assert await _lane_pid(backend) not in (None, lane)


async def test_an_enqueue_cancelled_on_the_lane_leaves_it_usable(
    backend: PostgresBackend, admin: asyncpg.Connection
) -> None:
    schema = backend.schema
    await backend.job_insert_many([insert()], now=T0)
    async with admin.transaction():  # an INSERT waits behind this lock
        await admin.execute(f'LOCK TABLE "{schema}".aiojobs_jobs IN SHARE MODE')
        task = asyncio.create_task(backend.job_insert_many([insert(queue="cancelled")], now=T0))
        await _until_waiting(admin, schema)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()
    await _until_all_idle(admin, schema)  # nothing of ours is left running or in a transaction
    for _ in range(3):
        await backend.job_insert_many([insert(queue="after")], now=T0)
    assert await admin.fetchval(f'SELECT count(*) FROM "{schema}".aiojobs_jobs WHERE queue = $1', "after") == 3
    assert await admin.fetchval(f'SELECT count(*) FROM "{schema}".aiojobs_jobs WHERE queue = $1', "cancelled") == 0


async def _until_waiting(admin: asyncpg.Connection, schema: str) -> None:
    """Until one of our connections waits on a lock (``admin`` may be in a transaction, which
    would see one snapshot of pg_stat_activity: each look clears it)."""
    async def waiting() -> bool:
        await admin.execute("SELECT pg_stat_clear_snapshot()")
        return bool(await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1 "
                                         "AND wait_event_type = 'Lock'", f"aiojobs:{schema}:%"))

    await eventually(waiting, message="one of our sessions waiting on a lock")


async def test_closing_while_an_enqueue_waits_on_the_lane_ends_both(
    backend: PostgresBackend, admin: asyncpg.Connection
) -> None:
    schema = backend.schema
    await backend.job_insert_many([insert()], now=T0)
    async with admin.transaction():
        await admin.execute(f'LOCK TABLE "{schema}".aiojobs_jobs IN SHARE MODE')
        enqueue = asyncio.create_task(backend.job_insert_many([insert(queue="during")], now=T0))
        await _until_waiting(admin, schema)
        closing = asyncio.create_task(backend.close())
        # A negative check, kept as a pause: nothing signals "close() is now waiting", and
        # 0.2 s is ample for a close that does not wait to end.
        await asyncio.sleep(0.2)
        assert not closing.done()  # close waits for the statement on the lane...
    async with asyncio.timeout(5):  # ...which ends once the lock goes, and then close ends
        await closing
        (job,) = await enqueue
    assert job.queue == "during"
    await _until_gone(admin, f"aiojobs:{schema}:%")


async def test_a_cancelled_close_still_cuts_every_connection(
    backend: PostgresBackend, admin: asyncpg.Connection
) -> None:
    schema = backend.schema
    await backend.job_insert_many([insert()], now=T0)
    await backend.job_claim(claim())  # the claims' connection too
    assert len(await _pids(admin, f"aiojobs:{schema}:%")) >= 2
    closing = asyncio.create_task(backend.close())
    await asyncio.sleep(0)  # close() is under way: waiting on the first connection it closes
    closing.cancel()
    await asyncio.gather(closing, return_exceptions=True)
    assert closing.cancelled()
    await _until_gone(admin, f"aiojobs:{schema}:%")
    # A negative check, kept as a pause: a reconnection would have no cause to signal.
    await asyncio.sleep(0.3)  # and nothing reconnects behind our back
    assert await _pids(admin, f"aiojobs:{schema}:%") == []


async def test_an_unreachable_server_is_unavailable() -> None:
    b = PostgresBackend("postgresql://postgres@127.0.0.1:1/nowhere", schema="x")
    with pytest.raises(BackendUnavailableError):
        await b.open()
    with pytest.raises(BackendUnavailableError):
        await b.listen(lambda payload: None)


# -- claims ----------------------------------------------------------------------------------


async def test_claim_tokens_are_uuids(backend: PostgresBackend) -> None:
    await backend.job_insert_many([insert(), insert()], now=T0)
    claimed = await backend.job_claim(claim())
    tokens = [r.claim_token for r in claimed]
    assert all(t is not None and str(uuid.UUID(t)) == t for t in tokens)
    await backend.job_start_many([JobStart(claimed[0].id, tokens[0] or "")], now=T0)
    await backend.job_cancel(retention=KEEP, job_id=claimed[0].id, now=T0)
    assert await backend.job_claims_to_stop([JobStart(claimed[0].id, tokens[0] or "")]) == [
        ClaimToStop(claimed[0].id, tokens[0] or "", held=True)]


async def test_global_limit_is_exact_across_backends_claiming_at_once(
    backend: PostgresBackend, postgres_url: str
) -> None:
    dsn, schema = _split(postgres_url)
    others = [PostgresBackend(dsn, schema=schema) for _ in range(3)]
    for other in others:
        await other.open()
    try:
        for n in range(10):  # races are probabilistic: give a broken cap many chances to show
            queue = f"capped{n}"
            await backend.job_insert_many([insert(queue=queue) for _ in range(30)], now=T0)
            demands = [QueueDemand(queue, 10, 3)]
            rounds = [b.job_claim(JobClaim(engine_id=f"e{i}", demands=demands, now=T0))
                      for i, b in enumerate([backend, *others]) for _ in range(4)]
            results = await asyncio.gather(*rounds)
            assert sum(len(batch) for batch in results) == 3
            assert dict(await backend.queue_running_counts([queue])) == {queue: 3}
    finally:
        for other in others:
            await other.close()


async def test_cancelling_a_claim_mid_transaction_leaves_no_lock_and_no_transaction(
    backend: PostgresBackend, postgres_url: str, admin: asyncpg.Connection
) -> None:
    dsn, schema = _split(postgres_url)
    other = PostgresBackend(dsn, schema=schema)
    await other.open()
    capped = [QueueDemand("default", 1, 1000)]  # a cap: the claim runs in a transaction under a lock
    try:
        await backend.job_insert_many([insert() for _ in range(100)], now=T0)
        for round_ in range(40):
            # A cancelled claim drops its connection: open the next one first, so that the
            # cancellation lands in the claim's transaction rather than in connecting.
            await backend.job_claim(JobClaim(engine_id="e1", demands=[QueueDemand("empty", 1, 1)], now=T0))
            task = asyncio.create_task(backend.job_claim(JobClaim(engine_id="e1", demands=capped, now=T0)))
            await asyncio.sleep(round_ % 10 * 0.0003)  # cancel at a different point each time
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            async with asyncio.timeout(5):  # the queue's lock was released
                await other.job_claim(JobClaim(engine_id="e2", demands=capped, now=T0))
            await backend.job_insert_many([insert(queue="after")], now=T0)  # and nothing stays open
            held = await admin.fetch(
                "SELECT l.pid, a.state FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND a.application_name LIKE $1", f"aiojobs:{schema}:%",
            )
            assert held == []
            # A dropped connection's server process may take a moment to see its client gone
            # and exit: what must not happen is that it stays.
            await _until_all_idle(admin, schema)
    finally:
        await other.close()
    assert await admin.fetchval(f'SELECT count(*) FROM "{schema}".aiojobs_jobs WHERE queue = $1', "after") == 40


async def test_a_claim_cancelled_while_it_waits_for_the_queue_lock_leaves_nothing_behind(
    backend: PostgresBackend, postgres_url: str, admin: asyncpg.Connection
) -> None:
    schema = backend.schema
    capped = [QueueDemand("default", 1, 1000)]
    await backend.job_insert_many([insert() for _ in range(3)], now=T0)
    key = f"aiojobs_engine:claim:{schema}:default"
    async with admin.transaction():  # another engine holds the queue's claim lock
        await admin.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key)
        task = asyncio.create_task(backend.job_claim(JobClaim(engine_id="e1", demands=capped, now=T0)))
        await _until_waiting(admin, schema)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()
    await _until_all_idle(admin, schema)  # no session of ours is left waiting, holding or open
    claimed = await backend.job_claim(JobClaim(engine_id="e1", demands=capped, now=T0))
    assert len(claimed) == 1  # the next claim works, on a new connection


async def test_a_capped_claim_whose_begin_is_refused_does_not_break_later_claims(
    backend: PostgresBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    capped = [QueueDemand("default", 1, 1000)]
    await backend.job_insert_many([insert() for _ in range(3)], now=T0)
    await backend.job_claim(JobClaim(engine_id="e1", demands=capped, now=T0))
    claims = backend._db._claims
    execute = type(claims).execute
    refuse = [True]

    async def refusing_begin(self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> Any:
        # What a cancel request landing on BEGIN does: the server answers BEGIN with an error,
        # after asyncpg has already counted the transaction as started.
        if self is claims and query.startswith("BEGIN") and refuse:
            refuse.clear()
            await execute(self, "SELECT 1/0")
        return await execute(self, query, *args, **kwargs)

    monkeypatch.setattr(type(claims), "execute", refusing_begin)
    with pytest.raises(BackendError):
        await backend.job_claim(JobClaim(engine_id="e1", demands=capped, now=T0))
    for _ in range(2):  # later claims work (on a new connection)
        assert len(await backend.job_claim(JobClaim(engine_id="e1", demands=capped, now=T0))) == 1


def _literal(value: object) -> str:
    """A SQL literal for the test's own values (EXPLAIN EXECUTE takes no parameters)."""
    if value is None:
        return "NULL"
    if isinstance(value, list):
        return "'{" + ",".join("NULL" if v is None else str(v) for v in value) + "}'"
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'"
    return f"'{value}'"


async def test_claim_uses_the_claim_index(backend: PostgresBackend, admin: asyncpg.Connection) -> None:
    batch = [insert(queue=f"q{i % 4}", priority=i % 7) for i in range(4000)]
    await backend.job_insert_many(batch, now=T0)
    table = f'"{backend.schema}".aiojobs_jobs'
    await admin.execute(f"UPDATE {table} SET state = 'completed', completed_at = now() WHERE id % 3 <> 0")
    await running(backend, insert(queue="q1"))  # a few held jobs for the global count
    await admin.execute(f"ANALYZE {table}")
    query = queries_for(backend.schema)["job_claim"]
    args = query.args({
        "engine_id": "e1", "now": T0 + timedelta(seconds=1), "queues": ["q1", "q2"], "limits": [10, 5],
        "global_limits": [None, 20], "incarnation": "i1", "fresh_within": 10.0,
        "start_now": ["job"], "start_queues": ["q2"],
    })

    def scans(plan: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
        found = [(plan["Node Type"], plan.get("Relation Name"), plan.get("Index Name"))]
        for child in plan.get("Plans", []):
            found += scans(child)
        return found

    async with admin.transaction():  # nothing is executed, but keep it tidy
        custom = json.loads(await admin.fetchval(f"EXPLAIN (FORMAT JSON) {query.sql}", *args))[0]["Plan"]
        await admin.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await admin.execute(f"PREPARE aiojobs_claim AS {query.sql}")
        literals = ", ".join(_literal(value) for value in args)
        generic_json = await admin.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE aiojobs_claim({literals})")
        generic = json.loads(generic_json)[0]["Plan"]
        await admin.execute("DEALLOCATE aiojobs_claim")
    now_param = f"COALESCE(${query.params.index('now') + 1}"
    assert now_param in generic_json  # a generic plan indeed: the time is still a parameter
    for plan in (custom, generic):
        nodes = scans(plan)
        assert not [n for n in nodes if n[0] == "Seq Scan"], nodes
        assert any(n[2] == "aiojobs_jobs_claim" for n in nodes), nodes
    claimed = await backend.job_claim(JobClaim(engine_id="e1", demands=[QueueDemand("q1", 10), QueueDemand("q2", 5)],
                                               now=T0 + timedelta(seconds=1)))
    assert [r.queue for r in claimed] == ["q1"] * 10 + ["q2"] * 5
    q1 = [r for r in claimed if r.queue == "q1"]
    assert [(r.priority, r.id) for r in q1] == sorted((r.priority, r.id) for r in q1)


async def test_expiry_is_inlined_into_the_outcome_write(backend: PostgresBackend, admin: asyncpg.Connection) -> None:
    """Migration 0004: the expiry function is an expression the planner inlines (no function
    call per row), and it still answers as 0002's did: kept (NULL) for a state without
    retention or a NULL or negative keep, else now + keep seconds."""
    query = queries_for(backend.schema)["job_write_many"]
    args = query.args({
        "start_ids": [], "start_tokens": [], "ids": [1], "tokens": ["t"], "from_states": ["running"],
        "states": ["completed"], "results": ["null"], "errors": [None], "delays": [None], "give_backs": [0],
        "deletes": [False], "now": None, "keep_completed": 60.0, "keep_failed": -1.0, "keep_canceled": 0.0,
    })
    plan = "\n".join(row[0] for row in await admin.fetch(f"EXPLAIN VERBOSE {query.sql}", *args))
    assert "aiojobs_expires_at" not in plan
    function = f'"{backend.schema}".aiojobs_expires_at'
    cases = [
        (("completed", 10.0, None, None), T0 + timedelta(seconds=10)),
        (("completed", 0.0, None, None), T0),
        (("completed", -1.0, 5.0, 5.0), None),
        (("completed", None, 5.0, 5.0), None),
        (("failed", 1.0, 3.5, 1.0), T0 + timedelta(seconds=3.5)),
        (("failed", 1.0, None, 1.0), None),
        (("canceled", 1.0, 1.0, 7200.0), T0 + timedelta(hours=2)),
        (("canceled", 1.0, 1.0, -0.5), None),
        (("waiting", 1.0, 1.0, 1.0), None),
    ]
    for (state, completed, failed, canceled), expected in cases:
        got = await admin.fetchval(f"SELECT {function}($1, $2, $3, $4, $5)", T0, state, completed, failed, canceled)
        assert got == expected, (state, completed, failed, canceled)


async def test_database_clock_is_used_when_no_time_is_given(backend: PostgresBackend) -> None:
    (job,) = await backend.job_insert_many([insert(delay=3600)])
    db_now = job.inserted_at
    assert job.available_at == db_now + timedelta(hours=1)
    assert await backend.job_claim(JobClaim(engine_id="e1", demands=[QueueDemand("default", 10)])) == []
    (due,) = await backend.job_insert_many([insert()])
    (claimed,) = await backend.job_claim(JobClaim(engine_id="e1", demands=[QueueDemand("default", 10)]))
    assert claimed.id == due.id and claimed.claimed_at is not None and claimed.claimed_at >= db_now
    started = await backend.job_start_many([JobStart(claimed.id, claimed.claim_token or "")])
    assert started[0].attempt == 1


async def test_bad_json_is_a_backend_error_not_a_driver_error(backend: PostgresBackend) -> None:
    broken = JobInsert(queue="q", name="n", args_json="[not json", kwargs_json="{}", constructor_args_json="[]",
                       meta_json="{}", retry_json=None, priority=1, max_attempts=1, timeout=None)
    with pytest.raises(BackendError) as caught:
        await backend.job_insert_many([broken], now=T0)
    assert not isinstance(caught.value, BackendUnavailableError)
    assert isinstance(caught.value.__cause__, asyncpg.PostgresError)
    assert await backend.job_count() == {}



async def test_a_queue_is_not_deleted_under_an_enqueue_in_flight(
    backend: PostgresBackend, postgres_url: str, admin: asyncpg.Connection
) -> None:
    """The enqueue's transaction found the queue's row and has not committed: the delete
    waits for it, then sees its job and keeps the queue."""
    dsn, _ = _split(postgres_url)
    await backend.queue_upsert(QueueChange(name="q"), now=T0)
    conn = await asyncpg.connect(dsn)
    try:
        tx = conn.transaction()
        await tx.start()
        await backend.job_insert_many([insert(queue="q")], now=T0, connection=conn)
        deleting = asyncio.create_task(backend.queue_delete("q"))
        await eventually(lambda: admin.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"),
                         timeout=5, message="the delete waits on the enqueue's transaction")
        await tx.commit()
        assert await deleting is False
        assert "q" in {q.name for q in await backend.queue_list()}
        # A transaction that stays open past the lock's tries fails the delete, saying why, and
        # writers go on once it has given up.
        tx = conn.transaction()
        await tx.start()
        await backend.job_insert_many([insert(queue="other")], now=T0, connection=conn)
        with pytest.raises(BackendError, match="kept it busy for 5 tries; try again"):
            await backend.queue_delete("q")
        assert await backend.job_insert_many([insert(queue="q")], now=T0)
        await tx.rollback()
    finally:
        await conn.close()


async def test_a_rate_limited_claim_takes_its_time_once_it_holds_the_queue_lock(
    backend: PostgresBackend, admin: asyncpg.Connection
) -> None:
    """The claim's time (its jobs' attempted_at) is read after the queue's claim lock is
    taken, not when its transaction began: a claim that waited for the lock never records
    starts earlier than those of the claim it waited for."""
    await backend.job_insert_many([insert("api") for _ in range(3)])
    key = f"aiojobs_engine:claim:{backend.schema}:api"
    await admin.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", key)
    claiming = asyncio.create_task(backend.job_claim(JobClaim(
        engine_id="e1", demands=[QueueDemand("api", 3, rate_limit=(10, 1.0))])))
    await eventually(lambda: admin.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                            "AND NOT granted"), timeout=5, message="the claim waits for the lock")
    released = await admin.fetchval("SELECT clock_timestamp()")
    await admin.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)
    claimed = await claiming
    assert len(claimed) == 3 and all(j.attempted_at is not None and j.attempted_at > released for j in claimed)


@pytest.mark.parametrize("demand", [
    pytest.param(QueueDemand("api", 3, concurrency_per_key=1), id="concurrency_per_key"),
    pytest.param(QueueDemand("api", 3, global_limit=10), id="global_concurrency"),
])
async def test_a_locked_claim_takes_its_time_once_it_holds_the_queue_lock(
    backend: PostgresBackend, admin: asyncpg.Connection, demand: QueueDemand
) -> None:
    """As the rate-limited claim above: a keyed or capped claim that waited for the queue's
    claim lock does not record its jobs' starts before the lock was released (its records
    would show a job of a key starting before the one it waited for had ended)."""
    await backend.job_insert_many([dataclasses.replace(insert("api"), concurrency_key=f"k{n}") for n in range(3)])
    key = f"aiojobs_engine:claim:{backend.schema}:api"
    await admin.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", key)
    claiming = asyncio.create_task(backend.job_claim(JobClaim(engine_id="e1", demands=[demand], start_now=["job"])))
    await eventually(lambda: admin.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                            "AND NOT granted"), timeout=5, message="the claim waits for the lock")
    released = await admin.fetchval("SELECT clock_timestamp()")
    await admin.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)
    claimed = await claiming
    assert len(claimed) == 3
    assert all(j.attempted_at is not None and j.attempted_at > released for j in claimed), (
        released, [j.attempted_at for j in claimed])


async def test_keyed_claim_plans_use_their_indexes(backend: PostgresBackend, admin: asyncpg.Connection) -> None:
    """A queue with per-key limits and 200,000 waiting jobs over 10,000 keys, some of them
    held, next to another queue's held jobs: key_candidates reads the claim index in claim
    order and what the keys hold from a held-jobs index, never a sequential scan of the jobs,
    in a custom and in a generic plan; job_claim_picked updates its picks by primary key.
    (200,000 rather than 1,000,000: one INSERT ... SELECT of a million rows takes 10-20 s on
    the 2-core machine the suite runs on; the plans are the same from about 100,000 on.)"""
    table = f'"{backend.schema}".aiojobs_jobs'
    await admin.execute(f"""
        INSERT INTO {table} (queue, name, priority, inserted_at, available_at, concurrency_key)
        SELECT 'api', 'job', n % 3, $1::timestamptz, $1::timestamptz + n * interval '1 ms', 'k' || (n % 10000)
        FROM generate_series(1, 200000) AS n""", T0)
    await admin.execute(f"""
        INSERT INTO {table} (queue, name, state, attempt, claimed_by, inserted_at, available_at)
        SELECT 'other', 'job', 'running', 1, 'e2', $1, $1 FROM generate_series(1, 5000)""", T0)
    await admin.execute(f"UPDATE {table} SET state = 'running', claimed_by = 'e1', attempt = 1 "
                        f"WHERE queue = 'api' AND id % 400 = 0")  # 500 keys hold a job
    await admin.execute(f"ANALYZE {table}")
    queries = queries_for(backend.schema)
    now = T0 + timedelta(hours=1)  # every job is due
    keyed = {"queue": "api", "now": now, "per_key": 1, "rate_n": 5, "opened_after": now - timedelta(seconds=1),
             "excluded": ["k1", "k2", "k3"], "scan": 200, "budget": 1000, "take": 1, "after": "k5", "steps": 256}
    candidates = queries["key_candidates"].args(keyed)
    walk = queries["key_candidates_loose"].args(keyed)
    picked = queries["job_claim_picked"].args({
        "ids": list(range(1, 101)), "start_all": False, "start_now": ["job"], "now": now, "engine_id": "e1",
        "incarnation": "i1", "fresh_within": 10.0})

    def scans(plan: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
        found = [(plan["Node Type"], plan.get("Relation Name"), plan.get("Index Name"))]
        for child in plan.get("Plans", []):
            found += scans(child)
        return found

    plans: dict[str, list[list[tuple[str, str | None, str | None]]]] = {}
    statements = {"key_candidates": candidates, "key_candidates_loose": walk, "job_claim_picked": picked}
    async with admin.transaction():  # EXPLAIN of an UPDATE executes nothing; rolled back all the same
        for name, args in statements.items():
            custom = json.loads(await admin.fetchval(f"EXPLAIN (FORMAT JSON) {queries[name].sql}", *args))
            plans[name] = [scans(custom[0]["Plan"])]
        await admin.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        for name, args in statements.items():
            await admin.execute(f"PREPARE aiojobs_{name} AS {queries[name].sql}")
            literals = ", ".join(_literal(value) for value in args)
            generic = await admin.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE aiojobs_{name}({literals})")
            await admin.execute(f"DEALLOCATE aiojobs_{name}")
            bound = "engine_id" if name == "job_claim_picked" else "queue"  # a parameter the plan shows
            assert f"${queries[name].params.index(bound) + 1}" in generic, generic  # generic: left unbound
            plans[name].append(scans(json.loads(generic)[0]["Plan"]))
    for nodes in plans["key_candidates"]:
        assert ("Seq Scan", "aiojobs_jobs", None) not in nodes, nodes
        assert ("Index Scan", "aiojobs_jobs", "aiojobs_jobs_claim") in nodes, nodes  # claim order, no sort
        assert any(index == "aiojobs_jobs_key_held" for _node, _table, index in nodes), nodes
    for nodes in plans["key_candidates_loose"]:  # key by key: the due-keys index, never the table
        assert ("Seq Scan", "aiojobs_jobs", None) not in nodes, nodes
        assert any(index == "aiojobs_jobs_key_due" for _node, _table, index in nodes), nodes
    for nodes in plans["job_claim_picked"]:
        assert ("Seq Scan", "aiojobs_jobs", None) not in nodes, nodes
        assert ("Index Scan", "aiojobs_jobs", "aiojobs_jobs_pkey") in nodes, nodes
