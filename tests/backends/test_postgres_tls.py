"""TLS when nothing asks for it: we ask the server first, and skip TLS only where it declines.

How a connection begins is seen by a relay on 127.0.0.1 in front of the test server: a
client that asks for TLS sends an SSLRequest before anything else, one that does not sends
its startup message, and our question alone is an SSLRequest followed by nothing. The relay
answers the SSLRequest itself (declining, or offering TLS it cannot speak), so what the tests
see does not depend on the server's TLS settings. A server that declines TLS but refuses
plain text all the same is played by the relay too: it answers a startup message that did
not ask for TLS first with the refusal such a server sends (FATAL 28000). Which URLs we may
decide for is a pure function, tested alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from aiojobs_engine._backends._protocol import JobClaim, QueueDemand
from aiojobs_engine._backends.postgres import PostgresBackend
from aiojobs_engine._backends.postgres._tls import SSL_REQUEST, UNIX_SOCKET, declines_tls, tls_target
from aiojobs_engine._errors import BackendUnavailableError
from aiojobs_engine._url import parse_url
from aiojobs_engine.conformance import T0, insert

# -- where we may ask ------------------------------------------------------------------------


@pytest.mark.parametrize(("dsn", "target"), [
    ("postgresql://u@127.0.0.1:5432/db", ("127.0.0.1", 5432)),
    ("postgresql://u:pw@db.example.com/db", ("db.example.com", 5432)),
    ("postgresql://u@[::1]:5433/db", ("::1", 5433)),
    ("postgresql://u@localhost/db?application_name=x&connect_timeout=3", ("localhost", 5432)),
    ("postgresql:///db?host=127.0.0.1&port=5439", ("127.0.0.1", 5439)),
    ("postgresql://u@%2Fvar%2Frun%2Fpostgresql/db", UNIX_SOCKET),
    ("postgresql:///db?host=/var/run/postgresql", UNIX_SOCKET),
])
def test_a_url_that_says_nothing_of_tls_names_where_to_ask(dsn: str, target: object) -> None:
    assert tls_target(dsn, {}) == target


@pytest.mark.parametrize("dsn", [
    "postgresql://u@127.0.0.1:5432,localhost:5433/db",  # several hosts: asyncpg chooses
    "postgresql:///db",  # asyncpg's default: local sockets, then localhost
    "postgresql://u@127.0.0.1/db?sslmode=prefer",
    "postgresql://u@127.0.0.1/db?sslmode=disable",
    "postgresql://u@127.0.0.1/db?sslrootcert=/etc/ca.pem",
    "postgresql://u@127.0.0.1/db?sslnegotiation=direct",
    "postgresql://u@127.0.0.1/db?service=jobs",
])
def test_several_hosts_and_any_word_about_tls_keep_asyncpgs_default(dsn: str) -> None:
    assert tls_target(dsn, {}) is None


@pytest.mark.parametrize(("environ", "target"), [
    ({"PGSSLMODE": "prefer"}, None),
    ({"PGSSLNEGOTIATION": "direct"}, None),
    ({"PGSSLROOTCERT": "/etc/ca.pem"}, None),
    ({"PGSERVICE": "jobs"}, None),
    ({"PGHOST": "db.example.com"}, ("db.example.com", 5432)),
    ({"PGHOST": "127.0.0.1", "PGPORT": "5433"}, ("127.0.0.1", 5433)),
    ({"PGHOST": "/tmp"}, UNIX_SOCKET),
    ({"PGUSER": "app"}, None),
])
def test_the_environment_counts_as_asyncpg_reads_it(environ: dict[str, str], target: object) -> None:
    assert tls_target("postgresql:///db", environ) == target


async def test_asking_a_port_where_nothing_listens_leaves_tls_to_asyncpg() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    assert not await declines_tls("127.0.0.1", port, 2.0)


async def test_a_server_that_never_answers_leaves_tls_to_asyncpg_within_the_timeout() -> None:
    silent: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda r, w: silent.append(w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    started = asyncio.get_running_loop().time()
    try:
        assert not await declines_tls("127.0.0.1", port, 0.2)
    finally:
        for writer in silent:
            writer.close()
        server.close()
        await server.wait_closed()
    assert asyncio.get_running_loop().time() - started < 2.0


# -- what our connections send --------------------------------------------------------------


class Relay:
    """A TCP relay on 127.0.0.1 in front of the test server; notes how each connection began."""

    def __init__(self, upstream: tuple[str, int], *, refuse_plain: bool = False, offer_tls: bool = False) -> None:
        self.upstream = upstream
        self.refuse_plain = refuse_plain
        self.offer_tls = offer_tls  # answer "S" (then hang up: the relay speaks no TLS)
        # Per connection: "probe" (an SSLRequest, then nothing), "tls" (asked for it first,
        # then went on) or "plain" (a startup message first).
        self.began: list[str] = []
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        if self._tasks:  # connections the clients closed end by themselves: let them note it
            await asyncio.wait(self._tasks, timeout=2.0)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._relay(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readexactly(8)
            if head == SSL_REQUEST:
                writer.write(b"S" if self.offer_tls else b"N")
                try:
                    await writer.drain()
                    head = await reader.read(8)
                except ConnectionError:  # hung up at once (reset rather than closed)
                    head = b""
                if not head:
                    self.began.append("probe")
                    return
                self.began.append("tls")
                if self.offer_tls:
                    return  # a TLS handshake began: cut it
                head += await reader.readexactly(8 - len(head))  # declined: plain text goes on
            elif self.refuse_plain:
                self.began.append("plain")
                writer.write(_fatal("28000", 'no pg_hba.conf entry for host "127.0.0.1", no encryption'))
                await writer.drain()
                return
            else:
                self.began.append("plain")
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            up_writer.write(head)
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    with contextlib.suppress(OSError):
        writer.write_eof()


def _fatal(code: str, message: str) -> bytes:
    """A server's ErrorResponse, as sent before authentication."""
    fields = b"".join(kind + text.encode() + b"\0" for kind, text in
                      ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", code), (b"M", message))) + b"\0"
    return b"E" + struct.pack("!i", 4 + len(fields)) + fields


def _through(dsn: str, port: int, query: str = "") -> str:
    """``dsn`` by way of the relay listening on ``port`` (with ``query`` instead of its own)."""
    parts = urlsplit(dsn)
    netloc = parts.netloc.rpartition("@")[0] + f"@127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc, query=query or parts.query))


@pytest.fixture
def server(postgres_url: str) -> tuple[str, str, tuple[str, int]]:
    """The test database's DSN and schema, and where its server listens."""
    parsed = parse_url(postgres_url)
    assert parsed.dsn is not None and parsed.schema is not None
    parts = urlsplit(parsed.dsn)
    return parsed.dsn, parsed.schema, (parts.hostname or "127.0.0.1", parts.port or 5432)


@pytest.fixture(autouse=True)
def _no_tls_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The defaults under test: no TLS setting in this process's environment."""
    for name in ("PGSSLMODE", "PGSSLNEGOTIATION", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY", "PGSERVICE"):
        monkeypatch.delenv(name, raising=False)


@contextlib.asynccontextmanager
async def _working(dsn: str, schema: str) -> AsyncIterator[PostgresBackend]:
    """A backend that has used each of its kinds of connection: pool, claims and LISTEN."""
    backend = PostgresBackend(dsn, schema=schema)
    await backend.open()
    try:
        await backend.migrate()
        listener = await backend.listen(lambda payload: None)
        await backend.job_insert_many([insert(queue="q")], now=T0)
        claimed = await backend.job_claim(JobClaim(engine_id="e1", demands=[QueueDemand("q", 1)], now=T0))
        assert len(claimed) == 1
        await listener.close()
        yield backend
    finally:
        await backend.close()



@pytest.mark.postgres
async def test_a_server_that_declines_tls_is_asked_once_and_gets_plain_connections(
    server: tuple[str, str, tuple[str, int]],
) -> None:
    dsn, schema, upstream = server
    async with Relay(upstream) as relay, _working(_through(dsn, relay.port), schema):
        pass
    assert relay.began[0] == "probe"
    assert len(relay.began) >= 4  # the question, then pool, claims and LISTEN
    assert set(relay.began[1:]) == {"plain"}


@pytest.mark.postgres
async def test_a_server_that_offers_tls_is_connected_to_the_default_way(
    server: tuple[str, str, tuple[str, int]],
) -> None:
    dsn, schema, upstream = server
    async with Relay(upstream, offer_tls=True) as relay:
        backend = PostgresBackend(_through(dsn, relay.port), schema=schema)
        with contextlib.suppress(BackendUnavailableError):  # the relay cuts the handshake
            await backend.open()
        await backend.close()
    assert relay.began[:2] == ["probe", "tls"]  # asked, offered: asyncpg's prefer takes over


@pytest.mark.postgres
@pytest.mark.parametrize("how", ["url", "environment"])
async def test_an_explicit_sslmode_is_honoured(
    server: tuple[str, str, tuple[str, int]], how: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    dsn, schema, upstream = server
    async with Relay(upstream) as relay:
        if how == "url":
            url = _through(dsn, relay.port, "sslmode=prefer")
        else:
            url = _through(dsn, relay.port)
            monkeypatch.setenv("PGSSLMODE", "prefer")
        async with _working(url, schema):
            pass
    assert set(relay.began) == {"tls"}  # no question of ours: asked first; declined, plain text goes on


@pytest.mark.postgres
async def test_sslmode_require_against_a_server_without_tls_fails_clearly(
    server: tuple[str, str, tuple[str, int]],
) -> None:
    dsn, schema, upstream = server
    async with Relay(upstream) as relay:
        backend = PostgresBackend(_through(dsn, relay.port, "sslmode=require"), schema=schema)
        with pytest.raises(BackendUnavailableError, match="rejected SSL upgrade"):
            await backend.open()
    # Asked, declined, given up (to the relay, that looks like our own question): no plain
    # text after it.
    assert relay.began == ["probe"]


@pytest.mark.postgres
async def test_a_server_refusing_plain_text_is_asked_the_default_way_from_then_on(
    server: tuple[str, str, tuple[str, int]],
) -> None:
    dsn, schema, upstream = server
    async with Relay(upstream, refuse_plain=True) as relay, _working(_through(dsn, relay.port), schema):
        pass
    assert relay.began[:2] == ["probe", "plain"]  # declined TLS, then refused plain text, once
    assert len(relay.began) >= 5
    assert set(relay.began[2:]) == {"tls"}  # then asked first, every time (pool, claims, LISTEN)
