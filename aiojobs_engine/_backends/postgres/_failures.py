"""What the driver's errors mean, and what becomes of a connection whose statement was cut off.

``translate()`` turns a driver error into ours: connection trouble (refused, lost, reset,
timed out, a server shutting down or terminating us, too many connections) becomes
``BackendUnavailableError``, which the runtime reads as "the database cannot be reached:
retry"; anything else a ``BackendError``.

A statement cut off midway (its caller cancelled or timed out, the connection lost) leaves
its connection with a statement the server may still be running. asyncpg then asks the
server to cancel it, on a connection of its own, and waits for the answer before the
connection can roll back or go back to the pool. In a network partition neither the cancel
nor its answer ever arrives, and the caller, which gave up on the statement, would wait in
that clean-up until the network healed (the engine's heartbeat, for one, stayed silent for a
whole 25 s partition although it gives up after 2 s). So the clean-up gets
``CANCEL_TIMEOUT``, and the connection is cut past it: a ``asyncio.timeout`` around any
backend call ends within ``CANCEL_TIMEOUT`` of its deadline, outage or not. Cutting at once
would be quicker, but a cut connection does not stop its statement: an enqueue waiting for a
lock would still commit once it got it, after its caller was told it was cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Final

import asyncpg  # type: ignore[import-untyped]

from ..._errors import BackendError, BackendUnavailableError
from .._shared import UniqueViolation

# A statement cut off midway: seconds for the server to confirm its cancellation (and for the
# rollback, and the release) before the connection is cut. A cancel request costs one round
# trip on a new connection; this is for the network that returns none.
CANCEL_TIMEOUT: Final = 2.0

# Errors that mean "the database cannot be reached right now": worth retrying later.
# Anything else means the database refused this statement itself (a data error).
_UNAVAILABLE: Final = (
    asyncpg.PostgresConnectionError,  # class 08, incl. a connection lost mid-operation
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutdown, terminated, cannot connect now, timeouts
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections, out of memory, disk full
    asyncpg.exceptions.IdleInTransactionSessionTimeoutError,  # 25P03: the server ended the session
    asyncpg.InterfaceError,  # the client's connection is closed or in a broken state
    asyncpg.InternalClientError,  # ditto, met inside the protocol ("cannot switch to state …")
    OSError,
    TimeoutError,
)
DRIVER_ERRORS: Final = (
    asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError, TimeoutError,
)


def unavailable(exc: BaseException) -> bool:
    """Whether a driver error means the database cannot be reached now (worth retrying)."""
    if isinstance(exc, asyncpg.ClientConfigurationError):  # an InterfaceError, but no retry mends it
        return False
    # 55000 is raised for a database that does not accept connections now (ALLOW_CONNECTIONS
    # false, or being dropped): no other statement can succeed meanwhile either.
    refusing = isinstance(exc, asyncpg.exceptions.ObjectNotInPrerequisiteStateError) and (
        "accepting connections" in str(exc)
    )
    return refusing or isinstance(exc, _UNAVAILABLE)


def translate(exc: BaseException, what: str) -> BackendError:
    """Our error for a driver error met while doing ``what`` (a statement name)."""
    # A timeout says nothing more than its type (str(TimeoutError()) is empty).
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if unavailable(exc):
        return BackendUnavailableError(f"PostgreSQL is unavailable ({what}): {detail}")
    if isinstance(exc, asyncpg.UniqueViolationError) and getattr(exc, "constraint_name", None) == "aiojobs_jobs_unique":
        return UniqueViolation(f"PostgreSQL error ({what}): {detail}")
    return BackendError(f"PostgreSQL error ({what}): {detail}")


def refused(exc: BaseException) -> bool:
    """The server refused the statement: the connection itself is fine and worth keeping.
    Not so a server that ends the session as it answers (shutting down, terminating us)."""
    return isinstance(exc, asyncpg.PostgresError) and not unavailable(exc)


def is_closed(conn: Any) -> bool:
    """A connection that can run nothing more (a pooled one the pool took back once it died
    refuses even the question)."""
    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:
        return True


class CutUnlessClean:
    """Cuts a connection whose statement was cut off midway, unless it comes clean (the
    server confirms the cancel, the rollback and the release are done) in ``CANCEL_TIMEOUT``."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._timer: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(CANCEL_TIMEOUT, self._cut)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _cut(self) -> None:
        # Through the pool's proxy: once released, the connection is someone else's, and the
        # proxy refuses (the release ended in time: nothing to cut).
        with contextlib.suppress(asyncpg.InterfaceError):
            self._conn.terminate()


@asynccontextmanager
async def guarded(conn: Any, *, transaction: bool, interrupted: Callable[[], None]) -> AsyncIterator[None]:
    """Run the body on ``conn`` (in a READ COMMITTED transaction if asked). When something
    other than a refusal by the server ends it (a cancellation, a timeout, a lost connection),
    ``interrupted()`` is called before the rollback, and that first error is what is raised,
    whatever the rollback of a connection cut meanwhile raises after it."""
    if not transaction:
        try:
            yield
        except BaseException as exc:
            if not refused(exc):
                interrupted()
            raise
        return
    first: BaseException | None = None
    try:
        async with conn.transaction(isolation="read_committed"):
            try:
                yield
            except BaseException as exc:
                first = exc
                if not refused(exc):
                    interrupted()
                raise
    except BaseException as exc:
        if first is None or exc is first:
            if first is None and not refused(exc):  # at BEGIN or COMMIT
                interrupted()
            raise
        raise first from None  # the rollback failed after the first error: that one is the news
