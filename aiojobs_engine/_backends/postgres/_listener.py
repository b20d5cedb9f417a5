"""The LISTEN side of the PostgreSQL backend: one dedicated connection per subscription.

The connection is not from the pool: it must stay subscribed between queries, and a pool
would hand it to other work. asyncpg calls ``on_notify`` on the event loop. A LISTEN
connection sits idle, so nothing fails when it dies. When the socket closes (server
restart, ``pg_terminate_backend``) asyncpg calls our termination listener, which ends
``wait_lost()``: the notifier re-subscribes at once. A connection can also die without a
word (a network cut), so ``check()`` proves it alive with a trivial query under a short
timeout; the engine's notifier calls it every few seconds and re-subscribes when it fails.
A connection that fails the check is cut there and then: it is dead to us, and a polite
close would wait for a network that may not answer (a partition).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Final

import asyncpg  # type: ignore[import-untyped]

from ..._errors import BackendUnavailableError
from ._failures import DRIVER_ERRORS

CHECK_TIMEOUT: Final = 5.0  # seconds for the liveness query
CLOSE_TIMEOUT: Final = 2.0  # seconds for a polite close before the socket is cut


class PostgresListener:
    """A live ``LISTEN`` on the backend's channel (implements ``Listener``)."""

    def __init__(self, connection: Any, channel: str, on_notify: Callable[[str], None],
                 on_close: Callable[[PostgresListener], None]) -> None:
        self._conn = connection
        self._channel = channel
        self._on_notify = on_notify
        self._on_close = on_close
        self._lost = asyncio.Event()
        connection.add_termination_listener(self._terminated)

    def _terminated(self, connection: object) -> None:
        self._lost.set()

    async def wait_lost(self) -> None:
        await self._lost.wait()

    async def subscribe(self) -> None:
        await self._conn.add_listener(self._channel, self._deliver)

    def _deliver(self, connection: object, pid: int, channel: str, payload: object) -> None:
        self._on_notify(str(payload))

    @property
    def server_pid(self) -> int:
        """The server process of the listening connection (for operators and tests)."""
        return int(self._conn.get_server_pid())

    async def check(self) -> None:
        if self._lost.is_set() or self._conn.is_closed():
            raise BackendUnavailableError(f"the connection listening on {self._channel!r} is closed")
        try:
            await self._conn.fetchval("SELECT 1", timeout=CHECK_TIMEOUT)
        except DRIVER_ERRORS as exc:
            self._conn.terminate()  # dead to us: nothing to wait for (see the module's docstring)
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise BackendUnavailableError(f"the connection listening on {self._channel!r} is dead: {detail}") from exc

    async def close(self) -> None:
        """Unsubscribe by closing the connection; safe on a dead one, and twice."""
        self._on_close(self)
        conn = self._conn
        if conn.is_closed():
            return
        try:
            await conn.close(timeout=CLOSE_TIMEOUT)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            # A dead or stuck connection: cut the socket instead, nothing to wait for.
            with contextlib.suppress(Exception):
                conn.terminate()
        except asyncio.CancelledError:
            conn.terminate()
            raise
