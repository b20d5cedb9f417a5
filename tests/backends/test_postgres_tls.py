"""TLS on loopback: our connections skip it unless asked, and fall back if plain text is refused.

How a connection begins is seen by a relay on 127.0.0.1 in front of the test server: a
client that asks for TLS sends an SSLRequest before anything else, one that does not sends
its startup message. The relay declines TLS itself (as a server with TLS off does), so what
the test sees does not depend on the server's TLS settings. A server that refuses plain
text (a ``hostssl``-only rule in ``pg_hba.conf``, which is not ours to set on the test
server) is played by the relay too: it answers a startup message that did not ask for TLS
first as such a server does (FATAL 28000). Which URLs may skip TLS is a pure function,
tested alone.
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
from aiojobs_engine._backends.postgres._tls import plain_on_loopback
from aiojobs_engine._errors import BackendUnavailableError
from aiojobs_engine._url import parse_url
from aiojobs_engine.conformance import T0, insert

_SSL_REQUEST = struct.pack("!ii", 8, 80877103)


# -- which URLs skip TLS ------------------------------------------------------------------


@pytest.mark.parametrize("dsn", [
    "postgresql://u@127.0.0.1:5432/db",
    "postgresql://u:pw@127.9.9.9/db",
    "postgresql://u@[::1]:5432/db",
    "postgresql://u@localhost/db",
    "postgresql://u@LOCALHOST:5433/db",
    "postgresql://u@%2Fvar%2Frun%2Fpostgresql/db",  # a Unix socket
    "postgresql://u@127.0.0.1:5432,localhost:5433/db",
    "postgresql:///db?host=127.0.0.1",
    "postgresql:///db",  # asyncpg's default: local sockets, then localhost
    "postgresql://u@127.0.0.1/db?application_name=x&connect_timeout=3",
])
def test_loopback_urls_that_say_nothing_of_tls_skip_it(dsn: str) -> None:
    assert plain_on_loopback(dsn, {})


@pytest.mark.parametrize("dsn", [
    "postgresql://u@db.example.com/db",
    "postgresql://u@10.0.0.5/db",
    "postgresql://u@127.0.0.1,10.0.0.5/db",  # every host must be loopback
    "postgresql:///db?host=db.example.com",
    "postgresql://u@127.0.0.1/db?sslmode=prefer",
    "postgresql://u@127.0.0.1/db?sslmode=disable",
    "postgresql://u@127.0.0.1/db?sslrootcert=/etc/ca.pem",
    "postgresql://u@127.0.0.1/db?sslnegotiation=direct",
    "postgresql://u@127.0.0.1/db?service=jobs",
])
def test_other_hosts_and_any_word_about_tls_keep_asyncpgs_default(dsn: str) -> None:
    assert not plain_on_loopback(dsn, {})


@pytest.mark.parametrize(("environ", "plain"), [
    ({"PGSSLMODE": "prefer"}, False),
    ({"PGSSLNEGOTIATION": "direct"}, False),
    ({"PGSSLROOTCERT": "/etc/ca.pem"}, False),
    ({"PGSERVICE": "jobs"}, False),
    ({"PGHOST": "db.example.com"}, False),
    ({"PGHOST": "127.0.0.1"}, True),
    ({"PGPORT": "5433", "PGUSER": "app"}, True),
])
def test_the_environment_counts_as_asyncpg_reads_it(environ: dict[str, str], plain: bool) -> None:
    assert plain_on_loopback("postgresql:///db", environ) is plain
    assert not plain_on_loopback("postgresql://u@db.example.com/db", environ)


# -- what our connections send --------------------------------------------------------------


class Relay:
    """A TCP relay on 127.0.0.1 in front of the test server; notes how each connection began."""

    def __init__(self, upstream: tuple[str, int], *, refuse_plain: bool = False) -> None:
        self.upstream = upstream
        self.refuse_plain = refuse_plain
        self.began: list[str] = []  # per connection: "tls" (asked for it first) or "plain"
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
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
            began = "tls" if head == _SSL_REQUEST else "plain"
            self.began.append(began)
            if began == "tls":
                writer.write(b"N")  # declined: the client goes on in plain text, or gives up
                head = await reader.readexactly(8)
            elif self.refuse_plain:
                writer.write(_fatal("28000", 'no pg_hba.conf entry for host "127.0.0.1", no encryption'))
                await writer.drain()
                return
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
async def test_connections_to_loopback_do_not_ask_for_tls(server: tuple[str, str, tuple[str, int]]) -> None:
    dsn, schema, upstream = server
    async with Relay(upstream) as relay, _working(_through(dsn, relay.port), schema):
        pass
    assert len(relay.began) >= 3  # pool, claims, LISTEN
    assert set(relay.began) == {"plain"}


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
    assert set(relay.began) == {"tls"}  # asked first; declined, and plain text goes on


@pytest.mark.postgres
async def test_sslmode_require_against_a_server_without_tls_fails_clearly(
    server: tuple[str, str, tuple[str, int]],
) -> None:
    dsn, schema, upstream = server
    async with Relay(upstream) as relay:
        backend = PostgresBackend(_through(dsn, relay.port, "sslmode=require"), schema=schema)
        with pytest.raises(BackendUnavailableError, match="rejected SSL upgrade"):
            await backend.open()
    assert relay.began == ["tls"]  # asked, declined, given up: no plain text after it


@pytest.mark.postgres
async def test_a_server_refusing_plain_text_is_asked_the_default_way_from_then_on(
    server: tuple[str, str, tuple[str, int]],
) -> None:
    dsn, schema, upstream = server
    async with Relay(upstream, refuse_plain=True) as relay, _working(_through(dsn, relay.port), schema):
        pass
    assert relay.began[0] == "plain"  # refused, once
    assert len(relay.began) >= 4
    assert set(relay.began[1:]) == {"tls"}  # then asked first, every time (pool, claims, LISTEN)
