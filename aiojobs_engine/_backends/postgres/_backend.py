"""The PostgreSQL backend (asyncpg): many engines, on many machines, sharing one database.

Connections: an asyncpg pool (opened in ``open()``), plus one dedicated connection per
``listen()``. Every statement is one round trip in autocommit mode unless it needs company:
claims of queues with a global cap, migrations, the stale-engine sweep and enqueues that
replace a unique job (cancel the holder, insert its replacement) run in short READ
COMMITTED transactions. asyncpg prepares and caches each statement per connection.

Schema: every table name in the SQL is qualified with the backend's schema, rendered into
the statements once when they are loaded. We do not set ``search_path`` on our connections
because transactional enqueue runs our insert on the *caller's* connection, whose
``search_path`` is theirs: only qualified names are right on both.

Concurrency and fencing, and why they are safe here:

* claims use ``FOR UPDATE SKIP LOCKED``, so engines never wait for, nor share, a row;
* a global cap is exact: claims of capped queues take a transaction-scoped advisory lock
  per queue, then count held jobs in a *later* statement, whose snapshot sees every claim
  committed before the lock was granted;
* every write about an attempt is conditional on id, claim token and expected state;
* migrations run in one transaction under an advisory lock keyed by the schema name.

Notifications travel on one channel per schema (``aiojobs_<schema>``), sent by the very
statements that cause them, so they are delivered at commit and never on rollback.
Needs PostgreSQL 13 or newer (``gen_random_uuid()`` built in).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]

from ... import _json
from ..._errors import BackendError, ConfigurationError, SchemaError
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
from .._sqlfiles import Migration
from ._connections import Connections, Transaction
from ._failures import DRIVER_ERRORS, translate
from ._listener import PostgresListener
from ._sql import MIGRATIONS, channel_for, queries_for, quote_ident, render

_UNUSED_TIME: Final = datetime.min  # the time of a claim with no rate-limited demand: never read
_QUEUE_DELETE_TRIES: Final = 5
_QUEUE_DELETE_PAUSE: Final = 0.2  # seconds between tries

_STARTS_ONLY: Final = Retention(completed=None, failed=None, canceled=None)  # a write of starts keeps nothing

_SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_POOL_MIN: Final = 1
_POOL_MAX: Final = 10


def _same(value: Any) -> datetime | None:
    return value  # type: ignore[no-any-return]  # asyncpg returns aware UTC datetimes


def _job(row: Any) -> JobRecord:
    return job_from_row(row, _same, _json.loads)


class PostgresBackend:
    """Storage in a PostgreSQL database, in ``schema`` (default ``public``).

    ``dsn`` is an asyncpg/libpq URL; the pool opens ``min_size`` connections in ``open()`` and
    grows to ``max_size`` as statements need them (no background reconnection: see
    ``_connections``), and each ``listen()`` opens one more of its own. Nothing connects
    before ``open()``.
    """

    def __init__(self, dsn: str, *, schema: str | None = None, min_size: int = _POOL_MIN,
                 max_size: int = _POOL_MAX) -> None:
        schema = "public" if schema is None else schema
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ConfigurationError(
                f"schema must be a lower-case SQL identifier (letters, digits, '_'), got {schema!r}"
            )
        self._dsn = dsn
        self._schema = schema
        self._channel = channel_for(schema)
        self._db = Connections(dsn, queries_for(schema), application_name=f"aiojobs:{schema}",
                               min_size=min_size, max_size=max_size)
        self._listeners: set[PostgresListener] = set()
        self._key_walks: dict[str, str] = {}  # per queue, where the last keyed walk stopped
        self.capabilities = BackendCapabilities(
            dialect="postgresql", supports_notify=True, shared=True, transactional_enqueue=True
        )

    @property
    def latest_version(self) -> int:
        return len(MIGRATIONS)

    @property
    def schema(self) -> str:
        return self._schema

    @property
    def channel(self) -> str:
        return self._channel

    def __repr__(self) -> str:
        parts = urlsplit(self._dsn)
        netloc = parts.netloc if parts.password is None else parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return f"<PostgresBackend {urlunsplit(parts._replace(netloc=netloc))!r} schema={self._schema!r}>"

    # -- connections ------------------------------------------------------------------------

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        for listener in list(self._listeners):
            await listener.close()
        await self._db.close()

    # -- schema ---------------------------------------------------------------------------

    async def migrate(self) -> list[int]:
        applied: list[int] = []
        async with self._db.transaction("migrate") as tx:
            await tx.fetch("migration_lock", {"key": f"aiojobs_engine:migrate:{self._schema}"})
            if not (await tx.fetch("namespace_exists", {"schema": self._schema}))[0][0]:
                await tx.fetch("schema_create", {})
            await tx.fetch("schema_table_create", {})
            current = int((await tx.fetch("schema_version", {}))[0][0])
            self._check_not_newer(current)
            for migration in MIGRATIONS[current:]:
                await self._apply(tx, migration)
                applied.append(migration.version)
        for version in applied:
            logger.info("applied migration %04d to schema %s", version, self._schema,
                        extra={"event": Event.MIGRATION_APPLIED, "version": version})
        return applied

    async def _apply(self, tx: Transaction, migration: Migration) -> None:
        # No parameters: asyncpg sends the script in one simple-protocol message, inside
        # the open transaction, so a failing statement undoes the whole migration.
        await tx.script(render(migration.sql, self._schema))
        await tx.fetch("schema_version_insert", {"version": migration.version, "name": migration.name})

    def _check_not_newer(self, current: int) -> None:
        if current > self.latest_version:
            raise SchemaError(
                f"the database schema {self._schema!r} is at version {current}, newer than this aiojobs_engine "
                f"knows ({self.latest_version}); upgrade aiojobs_engine on this host"
            )

    async def schema_version(self) -> int:
        table = f"{quote_ident(self._schema)}.aiojobs_schema"
        if not await self._db.fetchval("schema_table_exists", {"table": table}):
            return 0
        return int(await self._db.fetchval("schema_version", {}))

    # -- jobs -----------------------------------------------------------------------------

    async def job_insert_many(
        self, inserts: Sequence[JobInsert], *, now: datetime | None = None, connection: object | None = None,
        retention: Retention | None = None,
    ) -> list[JobRecord]:
        if connection is not None and not isinstance(connection, asyncpg.Connection):
            raise ConfigurationError(
                f"connection= must be an asyncpg connection (asyncpg.Connection, or one acquired from an "
                f"asyncpg pool), got {type(connection).__name__}; with SQLAlchemy, pass "
                f"(await conn.get_raw_connection()).driver_connection"
            )
        if not inserts:
            return []
        replacing = [i for i in inserts if i.unique_replace and i.unique_key is not None]
        if len(inserts) == 1:
            statement, params = "job_insert", _insert_params(inserts[0], now)
        else:
            statement, params = "job_insert_many", _insert_columns(inserts, now)
        if replacing:
            # Cancel the holders and insert their replacements in one transaction (a savepoint
            # in the caller's): should the insert fail, the holders stay as they were.
            async with self._db.transaction(statement, connection) as tx:
                clock = now or (await tx.fetch("database_now", {}))[0][0]
                await tx.fetch("job_unique_replace", {
                    "keys": [i.unique_key for i in replacing],
                    "stuck_before": [clock - timedelta(seconds=i.stuck_after or 0) for i in replacing],
                    "now": now, "keep_canceled": default_keep(retention.canceled if retention else None),
                })
                rows = await tx.fetch(statement, params)
        elif connection is None:
            rows = await self._db.fetch_on_lane(statement, params)
        else:
            rows = await self._db.fetch(statement, params, connection)
        records = inserted_records(inserts, rows, _same, stored_json=bool(params["stored_json"]))
        taken = [i.unique_key for i, r in zip(inserts, records, strict=True) if r is None and i.unique_key]
        if taken:
            rows = await self._db.fetch("job_unique_holders", {"keys": taken}, connection)
            holders = {r.unique_key: r for r in map(_job, rows)}
            for holder in holders.values():
                holder.existing = True
            records = [r if r is not None else holders.get(i.unique_key) for i, r in zip(inserts, records, strict=True)]
        missing = [n for n, r in enumerate(records) if r is None]
        if missing:
            # The holder finished between our insert and our read: the key is free again.
            again = await self.job_insert_many([inserts[n] for n in missing], now=now, connection=connection,
                                               retention=retention)
            for n, record in zip(missing, again, strict=True):
                records[n] = record
        return [r for r in records if r is not None]

    async def job_get(self, job_id: int) -> JobRecord | None:
        rows = await self._db.fetch("job_get", {"id": job_id})
        return _job(rows[0]) if rows else None

    async def job_list(self, where: JobFilter) -> list[JobRecord]:
        rows = await self._db.fetch("job_list", {
            "states": _text_array(where.states),
            "queues": _text_array(where.queues),
            "names": _text_array(where.names),
            "before_id": where.before_id,
            "limit": where.limit,
            "search": where.search,
        })
        return [_job(row) for row in rows]

    async def job_claim(self, claim: JobClaim) -> list[JobRecord]:
        demands = claim.demands
        if not demands:
            return []
        queues = [d.queue for d in demands]
        asked = [max(d.limit, 0) for d in demands]
        limits = list(asked)  # cut below by the rate-limited queues' windows
        params: dict[str, Any] = {
            "engine_id": claim.engine_id,
            "now": claim.now,
            "queues": queues,
            "limits": limits,
            "global_limits": [d.global_limit for d in demands],
            "incarnation": claim.incarnation,
            "fresh_within": claim.fresh_within,
            "start_now": list(claim.start_now),
            "start_queues": [],
        }
        limited: dict[str, tuple[int, float]] = {d.queue: d.rate_limit for d in demands if d.rate_limit is not None}
        keyed = [i for i, d in enumerate(demands) if d.per_key]
        locked = sorted({d.queue for d in demands if d.global_limit is not None or d.per_key} | set(limited))
        moment, windows = _UNUSED_TIME, {}
        async with self._db.claims("job_claim", transaction=bool(locked)) as tx:
            if locked:  # the lock, then the claim's time (read under it)
                keys = [f"aiojobs_engine:claim:{self._schema}:{queue}" for queue in locked]
                moment = params["now"] = (await tx.fetch("queue_lock_claims", {"keys": keys, "now": claim.now}))[0][0]
                if limited:
                    windows = await self._rate_windows(tx, limited, params, moment)
            keyed_limits = {i: limits[i] for i in keyed}
            for i in keyed:
                limits[i] = 0  # claimed below, key by key
            rows = [] if len(keyed) == len(demands) else list(await tx.fetch("job_claim", params))
            if keyed:
                rows += await self._claim_keyed(tx, claim, params, keyed_limits, moment)
                order = {queue: n for n, queue in enumerate(queues)}
                rows.sort(key=lambda r: (order.get(r["queue"], 0), r["priority"], r["available_at"], r["id"]))
            for i, queue in enumerate(queues):
                window = windows.get(queue)
                if window is None:
                    continue
                started = [row["attempted_at"] for row in rows if row["queue"] == queue]
                got = len(started)
                for at in started:  # the claim's time, or (keyed picks) the time they read after it
                    window.add(at, 1)
                await tx.fetch("rate_window_write", {"queue": queue, "starts": window.starts})
                oldest = window.oldest_counted()
                cut = keyed_limits.get(i, limits[i])
                if oldest is not None and got == cut < asked[i] and (await tx.fetch(
                        "rate_window_holds_back", {"queue": queue, "now": moment}))[0][0]:
                    wait = _seconds_until(moment, timedelta(seconds=limited[queue][1]))(oldest)
                    claim.rate_waits[queue] = min(max(0.0, wait), claim.rate_waits.get(queue, wait))
        return [_job(row) for row in rows]

    async def _claim_keyed(self, tx: Transaction, claim: JobClaim, params: Mapping[str, Any],
                           limits: Mapping[int, int], moment: datetime | None) -> list[Any]:
        """The demands with per-key limits, under their claim locks (see ``_keyed``)."""
        rows: list[Any] = []
        for i, limit in limits.items():
            demand = claim.demands[i]
            if demand.global_limit is not None:
                held = await tx.fetch("queue_running_counts", {"queues": [demand.queue]})
                limit = min(limit, max(0, demand.global_limit - (held[0]["n"] if held else 0)))
            period = timedelta(seconds=demand.rate_limit_per_key[1] if demand.rate_limit_per_key else 0)
            opened_after = None if moment is None else moment - period
            got = await claim_keyed(
                demand, limit, _KeyedSteps(tx, demand, params, opened_after, claim.now), self._key_walks,
                moment=moment,
                window_opened_after=opened_after,
                seconds_until_open=_seconds_until(moment or _UNUSED_TIME, period),
                start=demand.rate_limit is not None,
            )
            rows += got.rows
            if got.wait is not None:
                claim.rate_waits[demand.queue] = min(got.wait, claim.rate_waits.get(demand.queue, got.wait))
            if got.unfinished:
                claim.unfinished.add(demand.queue)
        return rows

    async def _rate_windows(self, tx: Transaction, limited: Mapping[str, tuple[int, float]],
                            params: dict[str, Any], moment: datetime) -> dict[str, RateWindow[datetime]]:
        """Cut each rate-limited demand of ``params`` to what its window allows at ``moment``
        (read under its claim lock) and make its picks start at once; the windows."""
        rows = await tx.fetch("rate_windows", {"queues": list(limited)})
        stored = {row["queue"]: row["starts"] for row in rows}
        windows: dict[str, RateWindow[datetime]] = {}
        for i, queue in enumerate(params["queues"]):
            if queue in limited:
                starts, seconds = limited[queue]
                window = windows[queue] = RateWindow.read(stored.get(queue) or (), starts,
                                                          moment - timedelta(seconds=seconds))
                params["limits"][i] = min(params["limits"][i], window.room())
        params["start_queues"] = list(windows)
        return windows

    async def job_start_many(self, starts: Sequence[JobStart], *, now: datetime | None = None) -> list[StartedJob]:
        if not starts:
            return []
        return (await self.job_write_many(starts, (), retention=_STARTS_ONLY, now=now)).started

    async def job_finish_many(
        self, outcomes: Sequence[JobOutcome], *, retention: Retention, now: datetime | None = None
    ) -> set[int]:
        if not outcomes:
            return set()
        return (await self.job_write_many((), outcomes, retention=retention, now=now)).accepted

    async def job_write_many(
        self, starts: Sequence[JobStart], outcomes: Sequence[JobOutcome], *, retention: Retention,
        now: datetime | None = None,
    ) -> WriteResult:
        if not starts and not outcomes:
            return WriteResult([], set())
        rows = await self._db.fetch("job_write_many", {
            "start_ids": [s.id for s in starts],
            "start_tokens": [s.token for s in starts],
            "ids": [o.id for o in outcomes],
            "tokens": [o.token for o in outcomes],
            "from_states": [o.from_state.value for o in outcomes],
            "states": [o.state.value for o in outcomes],
            "results": [o.result_json for o in outcomes],
            "errors": [o.error_json for o in outcomes],
            "delays": [o.delay for o in outcomes],
            "give_backs": [1 if o.give_back_attempt else 0 for o in outcomes],
            "deletes": [o.delete for o in outcomes],
            "now": now,
            **keep_defaults(retention),
        })
        return WriteResult(started=[StartedJob(row[1], row[2], row[3]) for row in rows if row[0] == "s"],
                           accepted={row[1] for row in rows if row[0] == "f"})

    async def job_cancel(self, job_id: int, *, retention: Retention, now: datetime | None = None) -> JobRecord | None:
        rows = await self._db.fetch("job_cancel", {
            "id": job_id, "now": now, "keep_canceled": default_keep(retention.canceled),
        })
        return _job(rows[0]) if rows else await self.job_get(job_id)

    async def job_claims_to_stop(self, claims: Sequence[JobStart]) -> list[ClaimToStop]:
        if not claims:
            return []
        rows = await self._db.fetch("job_claims_to_stop", {
            "ids": [c.id for c in claims], "tokens": [c.token for c in claims],
        })
        return [ClaimToStop(row[0], row[1], row[2]) for row in rows]

    async def job_held(self, engine_id: str) -> list[HeldJob]:
        rows = await self._db.fetch("job_held", {"engine_id": engine_id})
        return [HeldJob(row[0], row[1], JobState(row[2])) for row in rows]

    async def job_retry(self, job_id: int, *, now: datetime | None = None) -> JobRecord | None:
        try:
            rows = await self._db.fetch("job_retry", {"id": job_id, "now": now})
        except UniqueViolation as exc:
            job = await self.job_get(job_id)
            holders = [] if job is None or job.unique_key is None else [
                _job(row) for row in await self._db.fetch("job_unique_holders", {"keys": [job.unique_key]})]
            raise retry_conflict(job_id, job, holders) from exc
        return _job(rows[0]) if rows else await self.job_get(job_id)

    async def job_snooze(self, job_id: int, *, delay: float, now: datetime | None = None) -> JobRecord | None:
        rows = await self._db.fetch("job_snooze", {"id": job_id, "delay": delay, "now": now})
        return _job(rows[0]) if rows else await self.job_get(job_id)

    async def job_delete(self, job_id: int) -> bool:
        return bool(await self._db.fetch("job_delete", {"id": job_id}))

    async def job_delete_where(self, states: Sequence[JobState], queues: Sequence[str]) -> int:
        return int(await self._db.fetchval("job_delete_where", {
            "states": _text_array(states), "queues": _text_array(queues),
        }))

    async def job_count(
        self, *, now: datetime | None = None, due_only: bool = False
    ) -> Mapping[tuple[str, JobState], int]:
        if due_only:
            rows = await self._db.fetch("job_count_due", {"now": now})
        else:
            rows = await self._db.fetch("job_count", {})
        return {(row[0], JobState(row[1])): row[2] for row in rows}

    async def job_activity(
        self, *, since: datetime, bucket: float, now: datetime | None = None
    ) -> list[ActivityBucket]:
        rows = await self._db.fetch("job_activity", {"since": since, "bucket": bucket})
        return [ActivityBucket(row[0], row[1], row[2], row[3]) for row in rows]

    async def job_rescue(
        self, *, retention: Retention, stale_after: float | None = None, engine_id: str | None = None,
        now: datetime | None = None,
    ) -> RescueResult:
        params = {"engine_id": engine_id, "now": now, "keep_failed": default_keep(retention.failed),
                  "keep_canceled": default_keep(retention.canceled)}
        dead: list[str] = []
        if stale_after is None:
            rows = await self._db.fetch("job_rescue", params)
        else:
            # Two statements, one transaction: the rescue must see the engines just deleted as
            # gone (a later statement's snapshot), and a heartbeat racing the deletion waits
            # for it, then finds its row gone and revives it (Heartbeat.REVIVED).
            async with self._db.transaction("job_rescue") as tx:
                stale = await tx.fetch("engine_delete_stale", {"now": now, "stale_after": stale_after})
                dead = [row[0] for row in stale]
                rows = await tx.fetch("job_rescue", params)
        jobs = [_job(row) for row in rows]
        return RescueResult(
            dead_engines=dead,
            retried=[j for j in jobs if j.state is JobState.WAITING],
            failed=[j for j in jobs if j.state is JobState.FAILED],
            canceled=[j for j in jobs if j.state is JobState.CANCELED],
        )

    async def job_prune(self, *, limit: int, now: datetime | None = None) -> int:
        pruned = int(await self._db.fetchval("job_prune", {"limit": limit, "now": now}))
        await self._db.fetch("key_windows_prune", {"now": now})
        return pruned

    # -- queues ---------------------------------------------------------------------------

    async def queue_list(self) -> list[QueueRecord]:
        return [queue_from_row(row, _same) for row in await self._db.fetch("queue_list", {})]

    async def queue_upsert(self, change: QueueChange, *, now: datetime | None = None) -> QueueRecord:
        rows = await self._db.fetch("queue_upsert", {
            "name": change.name,
            "concurrency": change.concurrency,
            "priority": change.priority,
            "paused": change.paused,
            "global_concurrency": change.global_concurrency,
            "clear_global": change.clear_global_concurrency,
            "now": now,
            **queue_keep_params(change),
            **queue_rate_params(change),
        })
        clear = windows_to_clear(change)
        if clear != "none":  # windows of no use any more
            await self._db.fetch("rate_window_delete", {"queue": change.name, "keyed": clear})
        return queue_from_row(rows[0], _same)

    async def queue_running_counts(self, queues: Sequence[str]) -> Mapping[str, int]:
        rows = await self._db.fetch("queue_running_counts", {"queues": list(queues)})
        return {row[0]: row[1] for row in rows}

    async def queue_delete(self, name: str) -> bool:
        # The table lock (queries.sql) holds writers back while it waits: a short wait, tried
        # again a few times, rather than one long stall of every claim and enqueue.
        for _ in range(_QUEUE_DELETE_TRIES):
            try:
                async with self._db.transaction("queue_delete") as tx:
                    await tx.fetch("queue_delete_lock", {})
                    await tx.fetch("queue_delete_table_lock", {})
                    if not await tx.fetch("queue_delete", {"name": name}):
                        return False
                    await tx.fetch("rate_window_delete", {"queue": name, "keyed": None})
                    return True
            except BackendError as exc:
                if not isinstance(exc.__cause__, asyncpg.exceptions.LockNotAvailableError):
                    raise
            await asyncio.sleep(_QUEUE_DELETE_PAUSE)
        raise BackendError(
            f"queue {name!r} was not deleted: writes to the jobs table (or a vacuum) kept it busy for "
            f"{_QUEUE_DELETE_TRIES} tries; try again"
        )

    # -- engines --------------------------------------------------------------------------

    async def engine_register(
        self, registration: EngineRegistration, *, stale_after: float, takeover_incarnation: str | None,
        takeover_quiet: float = 0.0, now: datetime | None = None,
    ) -> bool:
        rows = await self._db.fetch("engine_register", _engine_params(registration, now) | {
            "stale_after": stale_after,
            "takeover": takeover_incarnation,
            "takeover_quiet": takeover_quiet,
        })
        return bool(rows)

    async def engine_get(self, engine_id: str) -> EngineRecord | None:
        rows = await self._db.fetch("engine_get", {"id": engine_id})
        return engine_from_row(rows[0], _same) if rows else None

    async def engine_list(self) -> list[EngineRecord]:
        return [engine_from_row(row, _same) for row in await self._db.fetch("engine_list", {})]

    async def engine_heartbeat(self, registration: EngineRegistration, *, now: datetime | None = None) -> Heartbeat:
        outcome = await self._db.fetchval("engine_heartbeat", _engine_params(registration, now))
        if outcome == "beat":
            return Heartbeat.BEAT
        if outcome == "revived":
            return Heartbeat.REVIVED
        return Heartbeat.LOST

    async def engine_unregister(self, engine_id: str, incarnation: str) -> None:
        await self._db.fetch("engine_unregister", {"id": engine_id, "incarnation": incarnation})

    # -- recurring schedules ------------------------------------------------------------------

    async def cron_upsert(self, schedule: CronSchedule, *, now: datetime | None = None) -> CronRecord:
        rows = await self._db.fetch("cron_upsert", {
            "name": schedule.name, "expression": schedule.expression, "timezone": schedule.timezone,
            "job": schedule.job, "args": schedule.args_json, "kwargs": schedule.kwargs_json,
            "options": schedule.options_json, "now": now,
        })
        return cron_from_row(rows[0], _same, _json.loads)

    async def cron_delete(self, name: str) -> bool:
        return bool(await self._db.fetch("cron_delete", {"name": name}))

    async def cron_pause(self, name: str, paused: bool, *, now: datetime | None = None) -> CronRecord | None:
        rows = await self._db.fetch("cron_pause", {"name": name, "paused": paused, "now": now})
        return cron_from_row(rows[0], _same, _json.loads) if rows else None

    async def cron_list(self) -> list[CronRecord]:
        return [cron_from_row(row, _same, _json.loads) for row in await self._db.fetch("cron_list", {})]

    async def cron_advance(self, name: str, tick: datetime, job_id: int | None) -> None:
        await self._db.fetch("cron_advance", {"name": name, "tick": tick, "job_id": job_id})

    # -- notifications ----------------------------------------------------------------------

    async def listen(self, on_notify: Callable[[str], None]) -> Listener:
        """LISTEN on a dedicated connection (never a pooled one)."""
        conn = await self._db.connect("listen")
        listener = PostgresListener(conn, self._channel, on_notify, self._listeners.discard)
        try:
            await listener.subscribe()
        except DRIVER_ERRORS as exc:
            await listener.close()
            raise translate(exc, "listen") from exc
        except BaseException:
            await listener.close()
            raise
        self._listeners.add(listener)
        return listener


def _text_array(values: Sequence[object]) -> list[str] | None:
    return [str(v) for v in values] if values else None


def _insert_params(insert: JobInsert, now: datetime | None) -> dict[str, object]:
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
        "delay": insert.delay,
        "run_at": insert.run_at,
        "unique_key": insert.unique_key,
        "unique_states": states_text(insert.unique_states) if insert.unique_key else None,
        "rescheduled_from": insert.rescheduled_from,
        "keep_completed": keep_value(dict(insert.keep), "completed"),
        "keep_failed": keep_value(dict(insert.keep), "failed"),
        "keep_canceled": keep_value(dict(insert.keep), "canceled"),
        "concurrency_key": insert.concurrency_key,
        "stored_json": _jsonb_rewrites([insert]),
        "now": now,
    }


def _insert_columns(inserts: Sequence[JobInsert], now: datetime | None) -> dict[str, object]:
    """The batch as one array per column, for unnest()."""
    keeps = [dict(i.keep) if i.keep else None for i in inserts]
    return {
        "queue": [i.queue for i in inserts],
        "name": [i.name for i in inserts],
        "args": [i.args_json for i in inserts],
        "kwargs": _nullable([None if i.kwargs_json == "{}" else i.kwargs_json for i in inserts]),
        "constructor_args": _nullable([None if i.constructor_args_json == "[]" else i.constructor_args_json
                                       for i in inserts]),
        "meta": _nullable([None if i.meta_json == "{}" else i.meta_json for i in inserts]),
        "retry": _nullable([i.retry_json for i in inserts]),
        "priority": [i.priority for i in inserts],
        "max_attempts": [i.max_attempts for i in inserts],
        "timeout": _nullable([i.timeout for i in inserts]),
        "delay": _nullable([i.delay for i in inserts]),
        "run_at": _nullable([i.run_at for i in inserts]),
        "unique_key": _nullable([i.unique_key for i in inserts]),
        "unique_states": _nullable([states_text(i.unique_states) if i.unique_key else None for i in inserts]),
        "rescheduled_from": _nullable([i.rescheduled_from for i in inserts]),
        "keep_completed": _nullable([keep_value(keep, "completed") if keep else None for keep in keeps]),
        "keep_failed": _nullable([keep_value(keep, "failed") if keep else None for keep in keeps]),
        "keep_canceled": _nullable([keep_value(keep, "canceled") if keep else None for keep in keeps]),
        "concurrency_key": _nullable([i.concurrency_key for i in inserts]),
        "stored_json": _jsonb_rewrites(inserts),
        "now": now,
    }


# A digit followed by an exponent: jsonb writes such a number out in full (1e+20 becomes
# 100000000000000000000, which decodes to an int). Other JSON decodes to the same values
# whether it is ours or jsonb's rewrite of it (spacing, key order, the sign of a zero).
# Strings may match too: that only costs reading the stored documents back.
_EXPONENT: Final = re.compile(r"[0-9][eE]")


def _jsonb_rewrites(inserts: Sequence[JobInsert]) -> bool:
    """Whether jsonb would store a document of these inserts as a different value."""
    documents: list[str] = []
    for i in inserts:
        documents += (i.args_json, i.kwargs_json, i.constructor_args_json, i.meta_json, i.retry_json or "")
    return _EXPONENT.search(" ".join(documents)) is not None


def _nullable(column: list[Any]) -> list[Any] | None:
    """A column of NULLs as a NULL array: unnest() pads it with NULLs all the same, and the
    driver skips encoding thousands of them (most columns of most batches are unset)."""
    return None if all(value is None for value in column) else column


def _engine_params(registration: EngineRegistration, now: datetime | None) -> dict[str, object]:
    return {
        "id": registration.id,
        "incarnation": registration.incarnation,
        "host": registration.host,
        "pid": registration.pid,
        "queues": None if registration.queues is None else list(registration.queues),
        "now": now,
    }



def _seconds_until(moment: datetime, period: timedelta) -> Callable[[datetime], float]:
    """From a window's oldest counted start to the seconds until the window opens again."""
    return lambda oldest: (oldest + period - moment).total_seconds()


def _timestamp_array(times: Sequence[datetime]) -> str:
    """Times as a PostgreSQL array literal (a column of arrays of unequal lengths is sent so)."""
    return "{" + ",".join(f'"{moment.isoformat()}"' for moment in times) + "}"


class _KeyedSteps:
    """A keyed claim's statements (``_keyed.KeyedSteps``), in the claim's transaction."""

    def __init__(self, tx: Transaction, demand: QueueDemand, params: Mapping[str, Any],
                 opened_after: datetime | None, frozen_now: datetime | None) -> None:
        self._tx = tx
        self._params = params
        self._frozen_now = frozen_now  # a test's clock; None: the picks read the time themselves
        self._query = statement_params(demand, params["now"], opened_after)

    async def candidates(self, excluded: Sequence[str], scan: int, *, after: str | None) -> Page:
        rows = await self._tx.fetch("key_candidates" if after is None else "key_candidates_loose",
                                    self._query | {"excluded": list(excluded), "scan": scan, "after": after})
        return page_from_rows(rows, walking=after is not None)

    async def windows(self, keys: Sequence[str]) -> Mapping[str, Sequence[datetime]]:
        rows = await self._tx.fetch("key_windows", {"queue": self._query["queue"], "keys": list(keys)})
        return {row["key"]: row["starts"] for row in rows}

    async def claim(self, ids: Sequence[int], start: bool) -> list[Any]:
        p = self._params
        return list(await self._tx.fetch("job_claim_picked", {
            "ids": list(ids), "start_all": start, "start_now": p["start_now"], "now": self._frozen_now,
            "engine_id": p["engine_id"], "incarnation": p["incarnation"], "fresh_within": p["fresh_within"],
        }))

    async def write_windows(self, starts: Mapping[str, Sequence[datetime]]) -> None:
        await self._tx.fetch("key_window_write", {
            "queue": self._query["queue"], "keys": list(starts),
            "starts": [_timestamp_array(times) for times in starts.values()],
        })

    async def holds_back(self) -> bool:
        rows = await self._tx.fetch("rate_window_holds_back", {
            "queue": self._query["queue"], "now": self._params["now"]})
        return bool(rows[0][0])

    async def first_full_window(self) -> datetime | None:
        rows = await self._tx.fetch("key_window_first_opening", self._query)
        oldest: datetime | None = rows[0]["oldest"]
        return oldest
