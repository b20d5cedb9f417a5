"""Connections of the PostgreSQL backend: the asyncpg pool, and driver errors made ours.

Every call goes through here, so every driver error is translated at this one boundary
(see ``_failures``): connection trouble becomes ``BackendUnavailableError``, worth
retrying; anything else a ``BackendError``; the driver's exception is kept as ``__cause__``.

A pooled connection that the server closed is dropped by asyncpg when it is next acquired
and replaced by a new one; a call that was using it when it died fails, once, with
``BackendUnavailableError``. The pool opens ``min_size`` connections in ``open()`` and
connects more only when a statement needs one: asyncpg's own floor (its ``min_size``, from
asyncpg 0.32) is not used, because it reconnects in the background and logs a warning with
a full traceback for every attempt that fails, all through an outage (issue 19). Connections
idle for five minutes are closed (asyncpg's default), as asyncpg did before 0.32.

A statement cut off midway (its caller cancelled or timed out, the connection lost) gets
``CANCEL_TIMEOUT`` for the clean-up asyncpg does (a cancel request, the rollback, the
release), and its connection is cut past it (see ``_failures``): a ``asyncio.timeout``
around any backend call ends in time, even in a network partition.

Claims have a connection of their own (one claim runs at a time per engine), set to use
generic plans: PostgreSQL re-planned the claim at every call, which cost as much as running
it (docs/decisions/2026-12-04-claim-generic-plan.md). The pool keeps the default, so
statements with optional filters (listing jobs, counting) still get plans made for their
actual arguments.

The claims' connection also commits without waiting for the disk (``synchronous_commit``
off), except for claims of capped queues: an undone claim loses no job, and the flush was a
large part of an idle engine's claim (docs/decisions/2026-12-04-claims-synchronous-commit-off.md;
the README's crash recovery says what an undone claim does cost).

Enqueues take a "lane": one pooled connection the backend keeps acquired, used by one
statement at a time, so that the common case (one enqueue at a time, a web handler's)
skips asyncpg's acquire and release (docs/decisions/2026-12-04-enqueue-lane.md). An enqueue
that finds the lane busy takes a pooled connection as any other statement does. Holding
a connection of the pool, not one of its own, keeps a process that only enqueues at one
connection.

When the URL and the environment say nothing about TLS, the first connect asks the server
whether it offers TLS (see ``_tls``): if it declines, every connection of ours is made in
plain text without the ``SSLContext`` asyncpg would build for nothing; otherwise they go
asyncpg's default way. A server that then refuses a plain connection (it declined TLS but
wants it after all) is asked the default way, and every later connection goes that way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Final, TypeVar
from urllib.parse import parse_qs, urlsplit

import asyncpg  # type: ignore[import-untyped]

from ..._errors import BackendError, ConfigurationError
from ._failures import DRIVER_ERRORS, CutUnlessClean, guarded, is_closed, refused, translate
from ._sql import Query
from ._tls import declines_tls, tls_target

_T = TypeVar("_T")

MIN_SERVER_VERSION: Final = 13  # gen_random_uuid() without pgcrypto
CONNECT_TIMEOUT: Final = 10.0
# Asking whether the server offers TLS: an answer that takes longer leaves TLS to asyncpg
# (whose own connect then waits CONNECT_TIMEOUT), so an unreachable host fails no later
# than it did before we asked.
TLS_QUESTION_TIMEOUT: Final = 2.0
CLOSE_TIMEOUT: Final = 10.0
IDLE_IN_TRANSACTION_MS: Final = 60_000

# How a server refuses a client for not using TLS: pg_hba.conf has no entry for it (28000),
# a pooler says it requires TLS (08P01), or the connection is cut at once. Other errors
# (a wrong password, an unknown database) are not worth a second try.
_REFUSED_IN_PLAIN: Final = (
    asyncpg.InvalidAuthorizationSpecificationError, asyncpg.ProtocolViolationError, ConnectionResetError,
)


async def _keep_session(connection: object) -> None:
    """Pool reset on release: nothing to undo, so no round trip.

    Our pooled connections hold no session state (no SET, cursors, LISTEN or session-level
    advisory locks: only transaction-scoped ones), and asyncpg still rolls back a
    transaction left open. asyncpg's default reset costs a round trip per statement.
    """


class Connections:
    """A pool of connections to one database, running the statements of ``queries``."""

    def __init__(self, dsn: str, queries: Mapping[str, Query], *, application_name: str,
                 min_size: int, max_size: int) -> None:
        if not 1 <= min_size <= max_size:
            raise ConfigurationError(f"pool sizes must satisfy 1 <= min_size <= max_size, got {min_size}, {max_size}")
        self._dsn = dsn
        self._q = queries
        self._application_name = application_name
        self._min_size = min_size
        self._max_size = max_size
        self._pool: Any = None
        self._open_lock = asyncio.Lock()
        self._claims: Any = None  # the claims' connection, opened at the first claim
        self._claims_lock = asyncio.Lock()
        self._lane: Any = None  # a pooled connection kept acquired for enqueues
        self._lane_lock = asyncio.Lock()
        self._plain: bool | None = None  # TLS declined by the server: decided at the first connect

    def server_settings(self, role: str) -> dict[str, str]:
        """Session settings for our connections, unless the URL sets them itself."""
        given = parse_qs(urlsplit(self._dsn).query)
        settings = {
            # Names our connections in pg_stat_activity, per role (pool, listen).
            "application_name": f"{self._application_name}:{role}",
            # Our statements are short index lookups: JIT compilation, which the planner's
            # cost estimates can trigger on big tables, would cost more than it saves.
            "jit": "off",
        }
        if role == "claim":
            # The claim was re-planned at every call (docs/decisions/2026-12-04-claim-generic-plan.md).
            settings["plan_cache_mode"] = "force_generic_plan"
            # An undone claim is claimed again and fenced, nothing lost; capped queues' claims commit
            # durably (queue_lock_claims). See docs/decisions/2026-12-04-claims-synchronous-commit-off.md.
            settings["synchronous_commit"] = "off"
        if role in ("pool", "claim"):
            # Our transactions last milliseconds. One left open by a stalled client (a job
            # blocking the event loop, a frozen host) would hold its row and advisory locks,
            # and stall every engine claiming a capped queue: the server ends it instead.
            settings["idle_in_transaction_session_timeout"] = str(IDLE_IN_TRANSACTION_MS)
        return {key: value for key, value in settings.items() if key not in given}

    async def open(self) -> None:
        async with self._open_lock:
            if self._pool is not None:
                return
            try:
                # Every connection the pool makes later goes the way its first ones did.
                pool, version = await self._reach(self._new_pool)
            except (asyncpg.ClientConfigurationError, ValueError) as exc:
                raise ConfigurationError(f"invalid PostgreSQL connection settings: {exc}") from exc
            except DRIVER_ERRORS as exc:
                raise translate(exc, "connect") from exc
            if version.major < MIN_SERVER_VERSION:
                await pool.close()
                raise ConfigurationError(
                    f"PostgreSQL {version.major} is too old: aiojobs_engine needs {MIN_SERVER_VERSION} or newer"
                )
            self._pool = pool

    async def _new_pool(self, **tls: Any) -> tuple[Any, Any]:
        """A pool holding its first ``min_size`` connections, and the server's version.

        asyncpg is given ``min_size=0``: it keeps no floor of its own (see the module's
        docstring), and connects nothing itself; the first connections are made here."""
        pool = await asyncpg.create_pool(
            self._dsn, min_size=0, max_size=self._max_size, timeout=CONNECT_TIMEOUT,
            server_settings=self.server_settings("pool"), reset=_keep_session, **tls,
        )
        try:
            held = [await pool.acquire() for _ in range(self._min_size)]
            version = held[0].get_server_version()
            for conn in held:
                await pool.release(conn)
        except BaseException:
            pool.terminate()
            raise
        return pool, version

    async def close(self) -> None:
        """Close every connection, within ``CLOSE_TIMEOUT`` in all; past it, on a dead server,
        or when cancelled, cut them instead (nothing is left behind to reconnect)."""
        pool, self._pool = self._pool, None
        claims, self._claims = self._claims, None
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                if claims is not None:
                    await claims.close()
                if pool is not None:
                    async with self._lane_lock:  # no enqueue midway on the lane
                        lane, self._lane = self._lane, None
                        if lane is not None:  # the pool waits for what is acquired
                            await pool.release(lane)
                    await pool.close()
        except BaseException as exc:  # stuck in a query, dead, or cancelled
            if claims is not None:
                claims.terminate()
            if pool is not None:
                pool.terminate()
            if not isinstance(exc, Exception):
                raise

    def _require_pool(self) -> Any:
        if self._pool is None:
            raise BackendError("the PostgreSQL backend is not open")
        return self._pool

    async def connect(self, role: str) -> Any:
        """A connection of its own, outside the pool (for LISTEN)."""
        try:
            return await self._reach(partial(
                asyncpg.connect, self._dsn, timeout=CONNECT_TIMEOUT, server_settings=self.server_settings(role),
            ))
        except DRIVER_ERRORS as exc:
            raise translate(exc, role) from exc

    async def _reach(self, connect: Callable[..., Awaitable[_T]]) -> _T:
        """``connect()`` (asyncpg's pool or connection), in plain text where TLS is declined."""
        if self._plain is None:
            self._plain = await self._tls_declined()
        if not self._plain:
            return await connect()
        try:
            return await connect(ssl=False)
        except _REFUSED_IN_PLAIN:
            pass  # it wants TLS after all: ask as asyncpg does by default (its error, if any)
        connected = await connect()
        self._plain = False  # every later connect asks the default way too
        return connected

    async def _tls_declined(self) -> bool:
        """Whether our connections may skip TLS (see ``_tls``): nothing asks for it, and the
        server declines it (or the connection is a Unix socket, where there is none)."""
        target = tls_target(self._dsn, os.environ)
        if target is None:
            return False
        if isinstance(target, str):  # a Unix socket
            return True
        host, port = target
        return await declines_tls(host, port, TLS_QUESTION_TIMEOUT)

    @asynccontextmanager
    async def _pooled(self, what: str, *, transaction: bool = False) -> AsyncIterator[Any]:
        """A pooled connection for one statement, or one READ COMMITTED transaction; driver
        errors translated. Cut off midway, the connection is cut unless it comes clean in
        ``CANCEL_TIMEOUT`` (see the module's docstring)."""
        pool = self._require_pool()
        try:
            conn = await pool.acquire()
        except DRIVER_ERRORS as exc:
            raise translate(exc, what) from exc
        cut = CutUnlessClean(conn)
        try:
            async with guarded(conn, transaction=transaction, interrupted=cut.arm):
                yield conn
        except BaseException as exc:
            with contextlib.suppress(Exception):  # a failed release terminates the connection itself
                await pool.release(conn)
            # Cancelled again while releasing, the timer stays: the release goes on, shielded.
            cut.disarm()
            if isinstance(exc, DRIVER_ERRORS):
                raise translate(exc, what) from exc
            raise
        await pool.release(conn)  # no round trip (see _keep_session)

    async def fetch(self, name: str, params: Mapping[str, object], connection: Any = None) -> list[Any]:
        """One statement, in autocommit mode on a pooled connection (or on ``connection``)."""
        query = self._q[name]
        if connection is not None:
            try:
                rows: list[Any] = await connection.fetch(query.sql, *query.args(params))
            except DRIVER_ERRORS as exc:
                raise translate(exc, name) from exc
            return rows
        async with self._pooled(name) as conn:
            return await conn.fetch(query.sql, *query.args(params))  # type: ignore[no-any-return]

    async def fetch_on_lane(self, name: str, params: Mapping[str, object]) -> list[Any]:
        """``fetch()`` on the lane if no other statement is using it (see the module's docstring)."""
        if self._lane_lock.locked():
            return await self.fetch(name, params)
        async with self._lane_lock:
            pool = self._require_pool()
            query = self._q[name]
            if self._lane is not None and is_closed(self._lane):
                self._lane = None  # it died idle (an outage, a restart): the pool took it back
            conn = self._lane
            try:
                if conn is None:
                    conn = self._lane = await pool.acquire()
                rows: list[Any] = await conn.fetch(query.sql, *query.args(params))
            except BaseException as exc:
                if conn is not None and not refused(exc):
                    # Cut off midway (cancelled) or lost: back to the pool, which waits for the
                    # cancel (within CANCEL_TIMEOUT) and resets the connection, or replaces a
                    # dead one.
                    self._lane = None
                    cut = CutUnlessClean(conn)
                    cut.arm()
                    with contextlib.suppress(Exception):  # a failed release terminates it
                        await pool.release(conn)
                    cut.disarm()
                if isinstance(exc, DRIVER_ERRORS):
                    raise translate(exc, name) from exc
                raise
            return rows

    async def fetchval(self, name: str, params: Mapping[str, object]) -> Any:
        query = self._q[name]
        async with self._pooled(name) as conn:
            return await conn.fetchval(query.sql, *query.args(params))

    @asynccontextmanager
    async def transaction(self, what: str, connection: Any = None) -> AsyncIterator[Transaction]:
        """A READ COMMITTED transaction on one pooled connection: each statement sees what
        committed before it started (the exact global cap relies on it), whatever the
        database's default isolation level.

        On ``connection`` (the caller's, for transactional enqueue): a transaction there, in
        its isolation level, or a savepoint if it is inside one already; a failure then rolls
        back our statements only and leaves the caller's transaction usable."""
        if connection is not None:
            try:
                async with connection.transaction():
                    yield Transaction(connection, self._q)
            except DRIVER_ERRORS as exc:
                raise translate(exc, what) from exc
            return
        async with self._pooled(what, transaction=True) as conn:
            yield Transaction(conn, self._q)

    @asynccontextmanager
    async def claims(self, what: str, *, transaction: bool = False) -> AsyncIterator[Transaction]:
        """The claims' connection, for one caller at a time (in a READ COMMITTED transaction
        if asked). Interrupted while in use (cancelled, or lost), it is dropped: a statement
        cut off midway leaves the connection in a state not worth reasoning about, and the
        next claim opens a fresh one."""
        async with self._claims_lock:
            self._require_pool()  # closed: no claim reopens anything
            conn = self._claims
            if conn is None or conn.is_closed():
                conn = await self.connect("claim")
                if self._pool is None:  # closed while connecting
                    conn.terminate()
                    self._require_pool()
                self._claims = conn
            try:
                # Cut off midway, the connection is cut at once (not after a rollback, which
                # in a network partition would wait for the network).
                async with guarded(conn, transaction=transaction, interrupted=conn.terminate):
                    yield Transaction(conn, self._q)
            except BaseException as exc:
                # A statement the server refused leaves the connection fine; not so one
                # refused inside a transaction, where asyncpg may still count a BEGIN that
                # failed (every later claim would then fail on a SAVEPOINT of its own).
                if transaction or not refused(exc):
                    self._claims = None
                    conn.terminate()
                if isinstance(exc, DRIVER_ERRORS):
                    raise translate(exc, what) from exc
                raise


class Transaction:
    """Statements run inside ``Connections.transaction()`` (errors are translated there)."""

    def __init__(self, connection: Any, queries: Mapping[str, Query]) -> None:
        self._conn = connection
        self._q = queries

    async def fetch(self, name: str, params: Mapping[str, object]) -> list[Any]:
        query = self._q[name]
        rows: list[Any] = await self._conn.fetch(query.sql, *query.args(params))
        return rows

    async def script(self, sql: str) -> None:
        """SQL without parameters, in one simple-protocol message (may hold several statements)."""
        await self._conn.execute(sql)
