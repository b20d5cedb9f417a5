"""The PostgreSQL backend through an outage (issue 19), the database behind a TCP proxy that
the tests cut: every call says ``BackendUnavailableError`` while the database cannot be
reached, the driver logs no tracebacks meanwhile, the first call after the outage works, and
a call its caller gives up on in a network partition hands control back in time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from aiojobs_engine._backends.postgres import PostgresBackend, _connections, _listener
from aiojobs_engine._backends.postgres._failures import CANCEL_TIMEOUT, is_closed, translate
from aiojobs_engine._errors import BackendError, BackendUnavailableError
from aiojobs_engine._url import parse_url
from aiojobs_engine.conformance import KEEP, T0, claim, insert
from tests._proxy import CutMode, TcpProxy
from tests._waiting import eventually

postgres = pytest.mark.postgres


@pytest.fixture
async def backend(postgres_url: str, postgres_proxy: TcpProxy) -> AsyncIterator[PostgresBackend]:
    """A migrated backend whose every connection goes through the proxy."""
    parsed = parse_url(postgres_proxy.url(postgres_url))
    assert parsed.dsn is not None
    b = PostgresBackend(parsed.dsn, schema=parsed.schema)
    await b.open()
    await b.migrate()
    yield b
    async with asyncio.timeout(_connections.CLOSE_TIMEOUT + 5):  # closing never waits for the network for ever
        await b.close()


def _calls(backend: PostgresBackend) -> dict[str, Callable[[], Awaitable[object]]]:
    """One call per way the backend reaches the database."""
    return {
        "pool": lambda: backend.job_get(1),
        "lane": lambda: backend.job_insert_many([insert()], now=T0),
        "claims": lambda: backend.job_claim(claim()),
        "transaction": lambda: backend.job_rescue(retention=KEEP, stale_after=60, now=T0),
    }


async def _warm(backend: PostgresBackend) -> None:
    """Open every connection the calls use, so that an outage meets them."""
    for call in _calls(backend).values():
        await call()


def _driver_tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("asyncpg") and (r.exc_info or r.levelno >= logging.WARNING)]


# -- what an outage looks like ---------------------------------------------------------------


@postgres
@pytest.mark.parametrize("mode", [CutMode.REFUSE, CutMode.RESET, CutMode.CLOSE])
async def test_every_call_is_unavailable_in_an_outage_and_works_after_it(
    backend: PostgresBackend, postgres_proxy: TcpProxy, mode: CutMode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await _warm(backend)
    listener = await backend.listen(lambda payload: None)
    await postgres_proxy.cut(mode)
    with pytest.raises(BackendUnavailableError):
        await listener.check()
    await listener.close()
    for _ in range(2):  # the first meets a dead connection, the second a refused connect
        for call in _calls(backend).values():
            with pytest.raises(BackendUnavailableError, match="PostgreSQL is unavailable"):
                await call()
        with pytest.raises(BackendUnavailableError):
            await backend.listen(lambda payload: None)
    fresh = PostgresBackend(backend._dsn, schema=backend.schema)
    with pytest.raises(BackendUnavailableError):
        await fresh.open()
    await postgres_proxy.restore()
    for call in _calls(backend).values():
        await call()
    await (await backend.listen(lambda payload: None)).close()
    assert _driver_tracebacks(caplog) == []


@postgres
async def test_an_outage_logs_no_driver_tracebacks(
    backend: PostgresBackend, postgres_proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """asyncpg (0.32 and later) keeps a pool's ``min_size`` connections by reconnecting in the
    background, with a warning and a full traceback for every attempt that fails: a dozen
    per outage and pool. Our pool keeps no such floor: the next statement reconnects."""
    caplog.set_level(logging.DEBUG)
    await _warm(backend)
    for mode in (CutMode.RESET, CutMode.REFUSE):
        await postgres_proxy.cut(mode)  # the pool's connections die idle
        for _ in range(3):
            with pytest.raises(BackendUnavailableError):
                await backend.job_get(1)
        await postgres_proxy.restore()
        await backend.job_get(1)
    assert _driver_tracebacks(caplog) == []


@postgres
async def test_the_first_enqueue_after_an_outage_works(backend: PostgresBackend, postgres_proxy: TcpProxy) -> None:
    """The lane (the connection kept for enqueues) died idle during the outage: the next
    enqueue takes a fresh connection rather than failing on the dead one."""
    await _warm(backend)
    lane = backend._db._lane
    assert lane is not None
    await postgres_proxy.cut(CutMode.RESET)
    await postgres_proxy.restore()
    await eventually(lambda: is_closed(lane), message="the driver has seen the lane's connection go")
    (job,) = await backend.job_insert_many([insert(queue="after")], now=T0)
    assert job.queue == "after"
    assert backend._db._lane is not lane


# -- a network partition -----------------------------------------------------------------------


async def _given_up(call: Callable[[], Awaitable[object]], after: float = 0.2) -> None:
    """The caller gives up on ``call`` after ``after`` seconds, and gets control back within
    CANCEL_TIMEOUT of that (else the outer timeout fails the test)."""
    async with asyncio.timeout(after + CANCEL_TIMEOUT + 3):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(after):
                await call()


@postgres
async def test_a_call_given_up_in_a_partition_hands_control_back(
    backend: PostgresBackend, postgres_proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """In a partition nothing answers: not the statement, not asyncpg's cancel request, not the
    rollback. A caller that gives up must not wait for them (the engine's heartbeat, for one,
    gives up after its interval, and must then report, not hang until the network heals)."""
    caplog.set_level(logging.DEBUG)
    await _warm(backend)
    await postgres_proxy.cut(CutMode.BLACKHOLE)
    await asyncio.gather(*(_given_up(call) for call in _calls(backend).values()))
    # The connections cut meanwhile are replaced by new ones, which the partition holds too.
    await asyncio.gather(*(_given_up(call) for call in _calls(backend).values()))
    await postgres_proxy.restore()
    for call in _calls(backend).values():
        await call()
    assert _driver_tracebacks(caplog) == []


@postgres
async def test_a_connect_in_a_partition_times_out_as_unavailable(
    backend: PostgresBackend, postgres_proxy: TcpProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_connections, "CONNECT_TIMEOUT", 0.3)
    await postgres_proxy.cut(CutMode.BLACKHOLE)
    with pytest.raises(BackendUnavailableError, match=r"\(listen\): TimeoutError$"):
        await backend.listen(lambda payload: None)
    with pytest.raises(BackendUnavailableError, match=r"\(claim\): TimeoutError$"):
        await backend.job_claim(claim())  # the claims' connection is opened by the first claim
    await postgres_proxy.restore()


@postgres
async def test_a_listener_found_dead_in_a_partition_is_cut_at_once(
    backend: PostgresBackend, postgres_proxy: TcpProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_listener, "CHECK_TIMEOUT", 0.2)
    listener = await backend.listen(lambda payload: None)
    await listener.check()
    await postgres_proxy.cut(CutMode.BLACKHOLE)
    with pytest.raises(BackendUnavailableError, match=r"is dead: TimeoutError$"):
        await listener.check()
    async with asyncio.timeout(1):  # nothing left to wait for: not even a polite close
        await listener.close()
    await postgres_proxy.restore()


# -- translation -------------------------------------------------------------------------------


@pytest.mark.parametrize("exc", [
    ConnectionRefusedError(111, "Connect call failed"),
    ConnectionResetError(104, "Connection reset by peer"),
    TimeoutError(),
    OSError("Network is unreachable"),
    asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.exceptions.ConnectionFailureError("could not receive data"),
    asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
    asyncpg.exceptions.IdleInTransactionSessionTimeoutError("terminating connection due to idle-in-transaction"),
    asyncpg.InterfaceError("connection is closed"),
    asyncpg.InternalClientError("cannot switch to state 12"),
    asyncpg.exceptions.ObjectNotInPrerequisiteStateError('database "x" is not currently accepting connections'),
])
def test_errors_of_an_unreachable_database_are_unavailable(exc: BaseException) -> None:
    error = translate(exc, "job_get")
    assert isinstance(error, BackendUnavailableError)
    assert str(error).startswith("PostgreSQL is unavailable (job_get): ")


@pytest.mark.parametrize("exc", [
    asyncpg.ClientConfigurationError("invalid sslmode"),  # an InterfaceError that no retry mends
    asyncpg.exceptions.InvalidPasswordError("password authentication failed"),
    asyncpg.exceptions.UndefinedTableError("relation does not exist"),
    asyncpg.exceptions.ObjectNotInPrerequisiteStateError("lock is not available"),
])
def test_errors_of_a_refusing_database_are_not_unavailable(exc: BaseException) -> None:
    error = translate(exc, "job_get")
    assert isinstance(error, BackendError) and not isinstance(error, BackendUnavailableError)


def test_an_empty_message_is_not_shown_as_an_empty_detail() -> None:
    assert str(translate(TimeoutError(), "claim")) == "PostgreSQL is unavailable (claim): TimeoutError"
    assert str(translate(ConnectionResetError(104, "Connection reset by peer"), "claim")) == (
        "PostgreSQL is unavailable (claim): ConnectionResetError: [Errno 104] Connection reset by peer"
    )
