"""The SQLite backend (aiosqlite): the embedded default, zero set-up.

One connection per backend, used by one coroutine at a time (an asyncio lock). Every write
the engine makes at work is a single statement in autocommit mode: SQLite holds its one
write lock for that statement only, inside one call on aiosqlite's thread, never across
turns of the event loop, so a job that blocks the loop cannot lock other processes out.
WAL lets readers proceed meanwhile, and ``busy_timeout`` makes a writer wait its turn
instead of failing. Several processes may share one database file. Only migrations, and
enqueues that replace a unique job (cancel the holder, insert its replacement: both or
neither), use a multi-statement ``BEGIN IMMEDIATE`` transaction; the latter is two short
statements sent back to back, so it holds the write lock for a few turns of the event loop
(should a job block the loop meanwhile, other writers wait, up to ``busy_timeout``).

``sqlite:///:memory:`` lives in this one connection: nothing else can see it, so it needs
no heartbeat thread and no reaper of other engines (``capabilities.shared`` is False).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import aiosqlite

from ... import _json
from ..._errors import BackendError, BackendUnavailableError, ConfigurationError, SchemaError
from ..._log import Event, logger
from ..._records import CronRecord, EngineRecord, JobRecord, JobState, QueueRecord
from .._keyed import Page, claim_keyed, page_from_rows, statement_params
from .._protocol import (
    ActivityBucket,
    BackendCapabilities,
    ClaimToStop,
    CronSchedule,
    EngineRegistration,
    Heartbeat,
    HeldJob,
    JobClaim,
    JobFilter,
    JobInsert,
    JobOutcome,
    JobStart,
    Listener,
    QueueChange,
    QueueDemand,
    RescueResult,
    Retention,
    StartedJob,
    WriteResult,
)
from .._rows import cron_from_row, engine_from_row, job_from_row, queue_from_row
from .._shared import (
    RateWindow,
    UniqueViolation,
    default_keep,
    inserted_records,
    keep_defaults,
    keep_value,
    queue_keep_params,
    queue_rate_params,
    retry_conflict,
    states_text,
    windows_to_clear,
)
from .._sqlfiles import load_migrations, load_queries
from ._listener import SQLiteChangeListener

_Q: Final = load_queries(__package__ or "aiojobs_engine._backends.sqlite")
_MIGRATIONS: Final = load_migrations(__package__ or "aiojobs_engine._backends.sqlite")
_MIN_SQLITE: Final = (3, 35, 0)  # RETURNING
_BUSY_TIMEOUT_MS: Final = 10_000
# SQLite's page cache, in KiB (default 2,000): half is no slower for our small index walks
# and keeps workers lighter (docs/decisions/2026-12-06-sqlite-page-cache.md).
_PAGE_CACHE_KIB: Final = 1_000
_US: Final = 1_000_000


def to_us(value: datetime) -> int:
    """Aware datetime → integer microseconds since the epoch."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * _US + delta.microseconds


def from_us(value: int | None) -> datetime | None:
    if value is None:
        return None
    return _EPOCH + timedelta(microseconds=value)


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _job(row: sqlite3.Row) -> JobRecord:
    # A dict first: sqlite3.Row finds a column by name by comparing it with every name
    # before it, and a job row has 40 columns, each read once.
    return job_from_row(dict(zip(row.keys(), row, strict=True)), from_us, _json.loads)


class SQLiteBackend:
    """Storage in one SQLite file (or in memory, for one process)."""

    def __init__(self, path: str) -> None:
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            raise ConfigurationError(
                f"SQLite {sqlite3.sqlite_version} is too old: aiojobs_engine needs 3.35 or newer "
                "(RETURNING); use a newer Python build or PostgreSQL"
            )
        self._path = path
        self._memory = path == ":memory:"
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._key_walks: dict[str, str] = {}  # per queue, where the last keyed walk stopped
        self.capabilities = BackendCapabilities(
            dialect="sqlite", supports_notify=not self._memory, shared=not self._memory, transactional_enqueue=False
        )

    @property
    def latest_version(self) -> int:
        return len(_MIGRATIONS)

    def __repr__(self) -> str:
        return f"<SQLiteBackend {self._path!r}>"

    # -- connection -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._conn is not None:
            return
        if not self._memory:
            _check_folder(self._path)
        try:
            conn = await aiosqlite.connect(self._path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error as exc:
            raise BackendUnavailableError(f"cannot open SQLite database {self._path!r}: {exc}") from exc
        conn.row_factory = sqlite3.Row
        try:
            await conn.create_function("aiojobs_expires_at", 5, _expires_at, deterministic=True)
            await conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            await conn.execute(f"PRAGMA cache_size = -{_PAGE_CACHE_KIB}")
            if not self._memory:
                await conn.execute("PRAGMA journal_mode = WAL")
                # FULL: a commit that returned survives a power loss, as a job engine promises.
                await conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            await conn.close()
            raise BackendUnavailableError(f"cannot set up SQLite database {self._path!r}: {exc}") from exc
        self._conn = conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            async with self._lock:
                await conn.close()

    def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise BackendError("the SQLite backend is not open")
        return self._conn

    @asynccontextmanager
    async def _guard(self) -> AsyncIterator[aiosqlite.Connection]:
        """Exclusive use of the connection; driver errors become our errors."""
        async with self._lock:
            conn = self._connection()
            try:
                yield conn
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    raise BackendUnavailableError(f"SQLite database is locked: {exc}") from exc
                raise BackendError(f"SQLite error: {exc}") from exc
            except sqlite3.IntegrityError as exc:
                if "UNIQUE constraint failed: aiojobs_jobs.unique_key" in str(exc):
                    raise UniqueViolation(f"SQLite error: {exc}") from exc
                raise BackendError(f"SQLite error: {exc}") from exc
            except sqlite3.Error as exc:
                raise BackendError(f"SQLite error: {exc}") from exc

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction holding SQLite's write lock from its first statement.

        aiosqlite runs statements in order on its own thread, and a statement whose caller
        was cancelled still runs. So whatever interrupts the transaction (even a cancellation
        during BEGIN), a ROLLBACK is queued before the connection is released: the next
        caller never finds itself inside someone else's half-done transaction.
        """
        async with self._guard() as conn:
            try:
                await conn.execute("BEGIN IMMEDIATE")
                yield conn
            except BaseException:
                await _run_to_completion(_rollback(conn))
                raise
            await _run_to_completion(conn.execute("COMMIT"))

    async def _read(self, name: str, params: Mapping[str, Any]) -> list[sqlite3.Row]:
        async with self._guard() as conn:
            return list(await conn.execute_fetchall(_Q[name], params))

    async def _write_one(self, name: str, params: Mapping[str, Any]) -> list[sqlite3.Row]:
        """One statement in autocommit mode: SQLite makes it its own transaction."""
        return await self._fetch(_Q[name], params)

    async def _fetch(self, sql: str, params: Mapping[str, Any]) -> list[sqlite3.Row]:
        async with self._guard() as conn:
            return list(await conn.execute_fetchall(sql, params))

    async def _write_count(self, name: str, params: Mapping[str, Any]) -> int:
        """One statement in autocommit mode; the number of rows it changed."""
        async with self._guard() as conn:
            cursor = await conn.execute(_Q[name], params)
            count = cursor.rowcount
            await cursor.close()
            return count

    # -- schema ---------------------------------------------------------------------------

    async def migrate(self) -> list[int]:
        applied: list[int] = []
        async with self._write() as conn:
            current = await self._current_version(conn)
            self._check_not_newer(current)
            for migration in _MIGRATIONS[current:]:
                # executescript would COMMIT our transaction: run statement by statement.
                for statement in _split_statements(migration.sql):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO aiojobs_schema (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, to_us(datetime.now(UTC))),
                )
                applied.append(migration.version)
        for version in applied:
            logger.info("applied migration %04d", version, extra={"event": Event.MIGRATION_APPLIED, "version": version})
        return applied

    async def _current_version(self, conn: aiosqlite.Connection) -> int:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS aiojobs_schema "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
        )
        rows = list(await conn.execute_fetchall("SELECT coalesce(max(version), 0) FROM aiojobs_schema"))
        return int(rows[0][0])

    def _check_not_newer(self, current: int) -> None:
        if current > self.latest_version:
            raise SchemaError(
                f"the database schema is at version {current}, newer than this aiojobs_engine knows "
                f"({self.latest_version}); upgrade aiojobs_engine on this host"
            )

    async def schema_version(self) -> int:
        async with self._guard() as conn:
            rows = list(await conn.execute_fetchall(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'aiojobs_schema'"
            ))
            if rows[0][0] == 0:
                return 0
            rows = list(await conn.execute_fetchall("SELECT coalesce(max(version), 0) FROM aiojobs_schema"))
        return int(rows[0][0])

    # -- jobs -----------------------------------------------------------------------------

    async def job_insert_many(
        self, inserts: Sequence[JobInsert], *, now: datetime | None = None, connection: object | None = None,
        retention: Retention | None = None,
    ) -> list[JobRecord]:
        if connection is not None:
            raise ConfigurationError(
                "connection= (enqueue inside your own transaction) needs the PostgreSQL backend"
            )
        if not inserts:
            return []
        now_us = _now_us(now)
        replacing = [i for i in inserts if i.unique_replace and i.unique_key is not None]
        if len(inserts) == 1:
            statement, params = "job_insert", _insert_params(inserts[0], now_us) | {
                "now": now_us, "concurrency_key": inserts[0].concurrency_key}
        else:
            batch = _json.dumps([_insert_params(i, now_us) for i in inserts], "batch", check_keys=False)
            statement, params = "job_insert_many", {"batch": batch, "now": now_us}  # one statement: atomic
        if replacing:
            # Cancel the holders and insert their replacements in one transaction: should the
            # insert fail, the holders stay as they were (never canceled with nothing instead).
            async with self._write() as conn:
                await conn.execute_fetchall(_Q["job_unique_replace"], {
                    "batch": _json.dumps([{"key": i.unique_key,
                                           "stuck_before": now_us - int((i.stuck_after or 0) * _US)}
                                          for i in replacing], "batch", check_keys=False),
                    "now": now_us, "keep_canceled": default_keep(retention.canceled if retention else None),
                })
                rows = list(await conn.execute_fetchall(_Q[statement], params))
        else:
            rows = await self._write_one(statement, params)
        records = inserted_records(inserts, rows, from_us)
        taken = [i.unique_key for i, r in zip(inserts, records, strict=True) if r is None and i.unique_key]
        if taken:
            holders = {r.unique_key: r for r in map(_job, await self._read(
                "job_unique_holders", {"keys": _json.dumps(taken, "keys")}))}
            for holder in holders.values():
                holder.existing = True
            records = [r if r is not None else holders.get(i.unique_key) for i, r in zip(inserts, records, strict=True)]
        missing = [n for n, r in enumerate(records) if r is None]
        if missing:
            # The holder finished between our insert and our read: the key is free again.
            again = await self.job_insert_many([inserts[n] for n in missing], now=now, retention=retention)
            for n, record in zip(missing, again, strict=True):
                records[n] = record
        return [r for r in records if r is not None]

    async def job_get(self, job_id: int) -> JobRecord | None:
        rows = await self._read("job_get", {"id": job_id})
        return _job(rows[0]) if rows else None

    async def job_list(self, where: JobFilter) -> list[JobRecord]:
        rows = await self._read("job_list", {
            "states": _json_list(where.states),
            "queues": _json_list(where.queues),
            "names": _json_list(where.names),
            "before_id": where.before_id,
            "limit": where.limit,
            "search": where.search,
        })
        return [_job(row) for row in rows]

    async def job_claim(self, claim: JobClaim) -> list[JobRecord]:
        demands = claim.demands
        if not demands:
            return []
        if any(d.rate_limit is not None or d.per_key for d in demands):
            async with self._write() as conn:  # the windows' read, the claim and their write: one writer
                rows = await self._claim_limited(conn, claim)
        else:
            rows = await self._fetch(_claim_sql(len(demands)), self._claim_params(claim, demands, _now_us(claim.now)))
        order = {demand.queue: n for n, demand in enumerate(demands)}
        return sorted((_job(row) for row in rows), key=lambda r: (order.get(r.queue, 0), *_claim_order(r)))

    def _claim_params(self, claim: JobClaim, demands: Sequence[QueueDemand], now_us: int) -> dict[str, Any]:
        params: dict[str, Any] = {
            "engine_id": claim.engine_id,
            "now": now_us,
            "incarnation": claim.incarnation,
            "fresh_since": now_us - int((claim.fresh_within or 0) * _US),
            "start_now": _json.dumps(list(claim.start_now), "start_now"),
        }
        for n, demand in enumerate(demands):
            limit = max(demand.limit, 0)
            params |= {f"queue_{n}": demand.queue, f"limit_{n}": limit, f"global_{n}": demand.global_limit}
        return params

    async def _claim_limited(self, conn: aiosqlite.Connection, claim: JobClaim) -> list[sqlite3.Row]:
        """A claim with rate-limited or keyed demands, in a write transaction: the time is read
        once the write lock is held (so it only grows from one limited claim to the next),
        each limited demand is cut to what its window allows, keyed demands are claimed key by
        key (``_keyed``), and the windows get the starts claimed."""
        now_us = _now_us(claim.now)
        limited = [d for d in claim.demands if d.rate_limit is not None]
        stored = {row[0]: _json.loads(row[1]) for row in await conn.execute_fetchall(
            _Q["rate_windows"], {"queues": _json.dumps([d.queue for d in limited], "queues")})} if limited else {}
        windows: dict[str, RateWindow[int]] = {}
        demands = []
        for demand in claim.demands:
            if demand.rate_limit is not None:
                starts, seconds = demand.rate_limit
                window = windows[demand.queue] = RateWindow.read(stored.get(demand.queue, []), starts,
                                                                 now_us - round(seconds * _US))
                demand = replace(demand, limit=min(demand.limit, window.room()))
            demands.append(demand)
        params = self._claim_params(claim, demands, now_us)
        params["start_queues"] = _json.dumps(list(windows), "start_queues")
        keyed = [n for n, d in enumerate(demands) if d.per_key]
        for n in keyed:
            params[f"limit_{n}"] = 0  # claimed below, key by key
        rows = [] if len(keyed) == len(demands) else list(
            await conn.execute_fetchall(_claim_sql(len(demands), limited=True), params))
        for n in keyed:
            rows += await self._claim_keyed(conn, claim, demands[n], params)
        for asked, cut in zip(claim.demands, demands, strict=True):
            if asked.rate_limit is None:
                continue
            limited_window = windows[asked.queue]
            got = sum(1 for row in rows if row["queue"] == asked.queue)
            limited_window.add(now_us, got)
            await conn.execute(_Q["rate_window_write"], {"queue": asked.queue,
                                                         "starts": _json.dumps(limited_window.starts, "starts")})
            oldest = limited_window.oldest_counted()
            if oldest is not None and got == cut.limit < max(asked.limit, 0) and next(iter(await conn.execute_fetchall(
                    _Q["rate_window_holds_back"], {"queue": asked.queue, "now": now_us})))[0]:
                wait = (oldest + round(asked.rate_limit[1] * _US) - now_us) / _US
                claim.rate_waits[asked.queue] = min(max(0.0, wait), claim.rate_waits.get(asked.queue, wait))
        return rows

    async def _claim_keyed(self, conn: aiosqlite.Connection, claim: JobClaim, demand: QueueDemand,
                           params: Mapping[str, Any]) -> list[sqlite3.Row]:
        """One demand with per-key limits (see ``_keyed``), in the claim's write transaction."""
        now_us: int = params["now"]
        limit = max(demand.limit, 0)
        if demand.global_limit is not None:
            held = list(await conn.execute_fetchall(
                _Q["queue_running_counts"], {"queues": _json.dumps([demand.queue], "queues")}))
            limit = min(limit, max(0, demand.global_limit - (held[0][1] if held else 0)))
        period = round(demand.rate_limit_per_key[1] * _US) if demand.rate_limit_per_key else 0
        got = await claim_keyed(
            demand, limit, _KeyedSteps(conn, demand, params, now_us - period), self._key_walks, moment=now_us,
            window_opened_after=now_us - period,
            seconds_until_open=lambda oldest: (oldest + period - now_us) / _US,
            start=demand.rate_limit is not None,
        )
        if got.wait is not None:
            claim.rate_waits[demand.queue] = min(got.wait, claim.rate_waits.get(demand.queue, got.wait))
        if got.unfinished:
            claim.unfinished.add(demand.queue)
        return got.rows

    async def job_start_many(self, starts: Sequence[JobStart], *, now: datetime | None = None) -> list[StartedJob]:
        if not starts:
            return []
        batch = _json.dumps([[s.id, s.token] for s in starts], "batch")
        rows = await self._write_one("job_start_many", {"batch": batch, "now": _now_us(now)})
        return [StartedJob(row["id"], row["attempt"], from_us(row["attempted_at"])) for row in rows]  # type: ignore[arg-type]

    async def job_finish_many(
        self, outcomes: Sequence[JobOutcome], *, retention: Retention, now: datetime | None = None
    ) -> set[int]:
        if not outcomes:
            return set()
        now_us = _now_us(now)
        updates = [_outcome_params(o) for o in outcomes if not o.delete]
        deletes = [_outcome_params(o) for o in outcomes if o.delete]
        accepted: set[int] = set()
        # Two statements, each atomic on its own: outcomes do not depend on each other.
        if updates:
            rows = await self._write_one("job_finish_many", {
                "batch": _json.dumps(updates, "batch", check_keys=False), "now": now_us, **keep_defaults(retention),
            })
            accepted.update(row[0] for row in rows)
        if deletes:
            batch = _json.dumps(deletes, "batch", check_keys=False)
            rows = await self._write_one("job_delete_fenced", {"batch": batch})
            accepted.update(row[0] for row in rows)
        return accepted

    async def job_write_many(
        self, starts: Sequence[JobStart], outcomes: Sequence[JobOutcome], *, retention: Retention,
        now: datetime | None = None,
    ) -> WriteResult:
        # Statements each atomic on their own, as the parts do not depend on each other: a
        # transaction around them would only add its BEGIN and COMMIT hops to the thread.
        started = await self.job_start_many(starts, now=now)
        return WriteResult(started, await self.job_finish_many(outcomes, retention=retention, now=now))

    async def job_cancel(self, job_id: int, *, retention: Retention, now: datetime | None = None) -> JobRecord | None:
        rows = await self._write_one("job_cancel", {
            "id": job_id, "now": _now_us(now), "keep_canceled": default_keep(retention.canceled),
        })
        return _job(rows[0]) if rows else await self.job_get(job_id)

    async def job_claims_to_stop(self, claims: Sequence[JobStart]) -> list[ClaimToStop]:
        if not claims:
            return []
        batch = _json.dumps([[c.id, c.token] for c in claims], "batch")
        rows = await self._read("job_claims_to_stop", {"batch": batch})
        return [ClaimToStop(row["id"], row["token"], bool(row["held"])) for row in rows]

    async def job_held(self, engine_id: str) -> list[HeldJob]:
        rows = await self._read("job_held", {"engine_id": engine_id})
        return [HeldJob(row["id"], row["claim_token"], JobState(row["state"])) for row in rows]

    async def job_retry(self, job_id: int, *, now: datetime | None = None) -> JobRecord | None:
        try:
            rows = await self._write_one("job_retry", {"id": job_id, "now": _now_us(now)})
        except UniqueViolation as exc:
            job = await self.job_get(job_id)
            holders = [] if job is None or job.unique_key is None else [_job(row) for row in await self._read(
                "job_unique_holders", {"keys": _json.dumps([job.unique_key], "keys")})]
            raise retry_conflict(job_id, job, holders) from exc
        return _job(rows[0]) if rows else await self.job_get(job_id)

    async def job_snooze(self, job_id: int, *, delay: float, now: datetime | None = None) -> JobRecord | None:
        now_us = _now_us(now)
        rows = await self._write_one("job_snooze", {"id": job_id, "available_at": now_us + int(delay * _US)})
        return _job(rows[0]) if rows else await self.job_get(job_id)

    async def job_delete(self, job_id: int) -> bool:
        return bool(await self._write_one("job_delete", {"id": job_id}))

    async def job_delete_where(self, states: Sequence[JobState], queues: Sequence[str]) -> int:
        return await self._write_count("job_delete_where", {"states": _json_list(states), "queues": _json_list(queues)})

    async def job_count(
        self, *, now: datetime | None = None, due_only: bool = False
    ) -> Mapping[tuple[str, JobState], int]:
        if due_only:
            rows = await self._read("job_count_due", {"now": _now_us(now)})
        else:
            rows = await self._read("job_count", {})
        return {(row["queue"], JobState(row["state"])): row["n"] for row in rows}

    async def job_activity(
        self, *, since: datetime, bucket: float, now: datetime | None = None
    ) -> list[ActivityBucket]:
        rows = await self._read("job_activity", {"since": to_us(since), "bucket": int(bucket * _US)})
        return [ActivityBucket(row["queue"], from_us(row["start"]), row["completed"], row["failed"])  # type: ignore[arg-type]
                for row in rows]

    async def job_rescue(
        self, *, retention: Retention, stale_after: float | None = None, engine_id: str | None = None,
        now: datetime | None = None,
    ) -> RescueResult:
        now_us = _now_us(now)
        dead: list[str] = []
        if stale_after is not None:
            # Deleting the dead engines first makes their jobs orphans; should this stop in
            # between, the next pass rescues those orphans all the same.
            rows = await self._write_one("engine_delete_stale", {"stale_before": now_us - int(stale_after * _US)})
            dead = [row[0] for row in rows]
        rows = await self._write_one("job_rescue", {
            "engine_id": engine_id, "now": now_us,
            "keep_failed": default_keep(retention.failed), "keep_canceled": default_keep(retention.canceled),
        })
        jobs = [_job(row) for row in rows]
        return RescueResult(
            dead_engines=dead,
            retried=[j for j in jobs if j.state is JobState.WAITING],
            failed=[j for j in jobs if j.state is JobState.FAILED],
            canceled=[j for j in jobs if j.state is JobState.CANCELED],
        )

    async def job_prune(self, *, limit: int, now: datetime | None = None) -> int:
        pruned = await self._write_count("job_prune", {"now": _now_us(now), "limit": limit})
        await self._write_one("key_windows_prune", {"now": _now_us(now)})
        return pruned

    # -- queues ---------------------------------------------------------------------------

    async def queue_list(self) -> list[QueueRecord]:
        return [queue_from_row(row, from_us) for row in await self._read("queue_list", {})]  # type: ignore[arg-type]

    async def queue_upsert(self, change: QueueChange, *, now: datetime | None = None) -> QueueRecord:
        rows = await self._write_one("queue_upsert", {
            "name": change.name,
            "concurrency": change.concurrency,
            "priority": change.priority,
            "paused": None if change.paused is None else int(change.paused),
            "global_concurrency": change.global_concurrency,
            "clear_global": int(change.clear_global_concurrency),
            "now": _now_us(now),
            **queue_keep_params(change),
            **queue_rate_params(change),
        })
        clear = windows_to_clear(change)
        if clear != "none":  # windows of no use any more
            await self._write_one("rate_window_delete", {"queue": change.name, "keyed": clear})
        return queue_from_row(rows[0], from_us)  # type: ignore[arg-type]

    async def queue_running_counts(self, queues: Sequence[str]) -> Mapping[str, int]:
        rows = await self._read("queue_running_counts", {"queues": _json.dumps(list(queues), "queues")})
        return {row["queue"]: row["n"] for row in rows}

    async def queue_delete(self, name: str) -> bool:
        if not await self._write_one("queue_delete", {"name": name}):
            return False
        await self._write_one("rate_window_delete", {"queue": name, "keyed": None})
        return True

    # -- engines --------------------------------------------------------------------------

    async def engine_register(
        self, registration: EngineRegistration, *, stale_after: float, takeover_incarnation: str | None,
        takeover_quiet: float = 0.0, now: datetime | None = None,
    ) -> bool:
        now_us = _now_us(now)
        rows = await self._write_one("engine_register", _engine_params(registration, now_us) | {
            "stale_before": now_us - int(stale_after * _US),
            "takeover": takeover_incarnation,
            "quiet_before": now_us - int(takeover_quiet * _US),
        })
        return bool(rows)

    async def engine_get(self, engine_id: str) -> EngineRecord | None:
        rows = await self._read("engine_get", {"id": engine_id})
        return engine_from_row(rows[0], from_us) if rows else None  # type: ignore[arg-type]

    async def engine_list(self) -> list[EngineRecord]:
        return [engine_from_row(row, from_us) for row in await self._read("engine_list", {})]  # type: ignore[arg-type]

    async def engine_heartbeat(self, registration: EngineRegistration, *, now: datetime | None = None) -> Heartbeat:
        params = _engine_params(registration, _now_us(now))
        if await self._write_one("engine_heartbeat", params):
            return Heartbeat.BEAT
        # No row of ours: re-create it, unless another incarnation has taken the id meanwhile.
        if await self._write_one("engine_revive", params):
            return Heartbeat.REVIVED
        return Heartbeat.LOST

    async def engine_unregister(self, engine_id: str, incarnation: str) -> None:
        await self._write_one("engine_unregister", {"id": engine_id, "incarnation": incarnation})

    # -- recurring schedules ------------------------------------------------------------------

    async def cron_upsert(self, schedule: CronSchedule, *, now: datetime | None = None) -> CronRecord:
        rows = await self._write_one("cron_upsert", {
            "name": schedule.name, "expression": schedule.expression, "timezone": schedule.timezone,
            "job": schedule.job, "args": schedule.args_json, "kwargs": schedule.kwargs_json,
            "options": schedule.options_json, "now": _now_us(now),
        })
        return cron_from_row(rows[0], from_us, _json.loads)  # type: ignore[arg-type]

    async def cron_delete(self, name: str) -> bool:
        return bool(await self._write_one("cron_delete", {"name": name}))

    async def cron_pause(self, name: str, paused: bool, *, now: datetime | None = None) -> CronRecord | None:
        rows = await self._write_one("cron_pause", {"name": name, "paused": int(paused), "now": _now_us(now)})
        return cron_from_row(rows[0], from_us, _json.loads) if rows else None  # type: ignore[arg-type]

    async def cron_list(self) -> list[CronRecord]:
        return [cron_from_row(row, from_us, _json.loads) for row in await self._read("cron_list", {})]  # type: ignore[arg-type]

    async def cron_advance(self, name: str, tick: datetime, job_id: int | None) -> None:
        await self._write_one("cron_advance", {"name": name, "tick": to_us(tick), "job_id": job_id})

    async def listen(self, on_notify: Callable[[str], None]) -> Listener:
        if self._memory:
            raise BackendError("an in-memory SQLite database has no other connection to watch")
        listener = SQLiteChangeListener(self._data_version, on_notify)
        await listener.start()
        return listener

    async def _data_version(self) -> int:
        rows = await self._fetch("PRAGMA data_version", {})
        return int(rows[0][0])


async def _rollback(conn: aiosqlite.Connection) -> None:
    with contextlib.suppress(sqlite3.OperationalError):  # the BEGIN never ran: nothing to undo
        await conn.execute("ROLLBACK")


async def _run_to_completion(awaitable: Awaitable[object]) -> None:
    """Await to the end even if cancelled meanwhile; then let the cancellation through."""
    task = asyncio.ensure_future(awaitable)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    task.result()
    if cancelled:
        raise asyncio.CancelledError


def _expires_at(now: int, state: str, keep_completed: float, keep_failed: float, keep_canceled: float) -> int | None:
    """aiojobs_expires_at() in SQL: when a job that reached ``state`` may be deleted."""
    keep = {"completed": keep_completed, "failed": keep_failed, "canceled": keep_canceled}.get(state)
    if keep is None or keep < 0:
        return None
    return int(now + keep * _US)




def _check_folder(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(os.path.expanduser(path)))
    if not os.path.isdir(parent):
        raise ConfigurationError(f"SQLite database folder {parent!r} does not exist")


def _now_us(now: datetime | None) -> int:
    return to_us(now if now is not None else datetime.now(UTC))


_STARTS_NAMED: Final = "name IN (SELECT value FROM json_each(:start_now))"
_STARTS_LIMITED: Final = f"({_STARTS_NAMED} OR queue IN (SELECT value FROM json_each(:start_queues)))"


@functools.cache
def _claim_sql(demands: int, limited: bool = False) -> str:
    """The claim statement for this many demands (cached: a handful of shapes in practice);
    ``limited``: some are rate-limited, and every job of theirs starts at once."""
    pick = _Q["job_claim_pick"]
    picks = " UNION ALL ".join(pick.replace("{n}", str(n)) for n in range(demands))
    return _Q["job_claim"].replace("{picks}", picks).replace("{starts}", _STARTS_LIMITED if limited else _STARTS_NAMED)


def _claim_order(record: JobRecord) -> tuple[int, datetime, int]:
    return record.priority, record.available_at, record.id


def _json_list(values: Sequence[object]) -> str | None:
    return _json.dumps([str(v) for v in values], "filter") if values else None


def _insert_params(insert: JobInsert, now_us: int) -> dict[str, Any]:
    if insert.run_at is not None:
        available_at = to_us(insert.run_at)
    elif insert.delay:
        available_at = now_us + int(insert.delay * _US)
    else:
        available_at = now_us
    return {
        "queue": insert.queue,
        "name": insert.name,
        "args": insert.args_json,
        "kwargs": insert.kwargs_json,
        "constructor_args": insert.constructor_args_json,
        "meta": insert.meta_json,
        "retry": insert.retry_json,
        "priority": insert.priority,
        "max_attempts": insert.max_attempts,
        "timeout": insert.timeout,
        "available_at": available_at,
        "unique_key": insert.unique_key,
        "unique_states": states_text(insert.unique_states) if insert.unique_key else None,
        "rescheduled_from": insert.rescheduled_from,
        "keep_completed": keep_value(dict(insert.keep), "completed"),
        "keep_failed": keep_value(dict(insert.keep), "failed"),
        "keep_canceled": keep_value(dict(insert.keep), "canceled"),
    } | ({} if insert.concurrency_key is None else {"concurrency_key": insert.concurrency_key})


def _outcome_params(outcome: JobOutcome) -> dict[str, Any]:
    return {
        "id": outcome.id,
        "token": outcome.token,
        "from": outcome.from_state.value,
        "state": outcome.state.value,
        "result": outcome.result_json,
        "error": outcome.error_json,
        "delay": outcome.delay,
        "give_back": int(outcome.give_back_attempt),
    }


def _engine_params(registration: EngineRegistration, now_us: int) -> dict[str, Any]:
    return {
        "id": registration.id,
        "incarnation": registration.incarnation,
        "host": registration.host,
        "pid": registration.pid,
        "queues": None if registration.queues is None else _json.dumps(list(registration.queues), "queues"),
        "now": now_us,
    }


def _split_statements(script: str) -> list[str]:
    """Split a migration into statements; ``sqlite3.complete_statement`` keeps triggers whole."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(part.strip().startswith("--") for part in buffer.splitlines() if part.strip()):
        raise SchemaError(f"incomplete statement at the end of a migration: {buffer.strip()[:80]!r}")
    return statements


class _KeyedSteps:
    """A keyed claim's statements (``_keyed.KeyedSteps``), in the claim's write transaction."""

    def __init__(self, conn: aiosqlite.Connection, demand: QueueDemand, params: Mapping[str, Any],
                 opened_after: int) -> None:
        self._conn = conn
        self._params = params
        self._query = statement_params(demand, params["now"], opened_after)

    async def candidates(self, excluded: Sequence[str], scan: int, *, after: str | None) -> Page:
        rows = await self._conn.execute_fetchall(_Q["key_candidates" if after is None else "key_candidates_loose"], {
            **self._query, "excluded": _json.dumps(list(excluded), "excluded"), "scan": scan, "after": after,
        })
        return page_from_rows(list(rows), walking=after is not None)

    async def windows(self, keys: Sequence[str]) -> Mapping[str, Sequence[int]]:
        rows = await self._conn.execute_fetchall(_Q["key_windows"], {
            "queue": self._query["queue"], "keys": _json.dumps(list(keys), "keys")})
        return {row[0]: _json.loads(row[1]) for row in rows}

    async def claim(self, ids: Sequence[int], start: bool) -> list[Any]:
        p = self._params
        return list(await self._conn.execute_fetchall(_Q["job_claim_picked"], {
            "ids": _json.dumps(list(ids), "ids"), "start_all": int(start), "start_now": p["start_now"],
            "now": p["now"], "engine_id": p["engine_id"], "incarnation": p["incarnation"],
            "fresh_since": p["fresh_since"],
        }))

    async def write_windows(self, starts: Mapping[str, Sequence[int]]) -> None:
        await self._conn.execute(_Q["key_window_write"], {
            "queue": self._query["queue"],
            "batch": _json.dumps([[key, list(times)] for key, times in starts.items()], "batch"),
        })

    async def holds_back(self) -> bool:
        rows = await self._conn.execute_fetchall(_Q["rate_window_holds_back"], {
            "queue": self._query["queue"], "now": self._params["now"]})
        return bool(next(iter(rows))[0])

    async def first_full_window(self) -> int | None:
        rows = await self._conn.execute_fetchall(_Q["key_window_first_opening"], self._query)
        oldest = next(iter(rows))[0]
        return None if oldest is None else int(oldest)
