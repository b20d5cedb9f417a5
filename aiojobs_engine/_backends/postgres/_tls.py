"""TLS when nothing asks for it: ``sslmode=prefer``, without its cost when the server declines.

asyncpg's default, like libpq's, is ``sslmode=prefer``: ask the server for TLS, use it if
offered, go on in plain text if declined. Asking is not free even when the server declines:
asyncpg builds an ``ssl.SSLContext`` for every connect before it asks, and the first one
initialises OpenSSL in the process, memory a worker that never speaks TLS need not carry
(docs/decisions/2026-12-06-tls-probe.md).

So when neither the URL nor the environment says anything about TLS, we ask the server
ourselves first, on a throwaway connection: PostgreSQL's 8-byte SSLRequest, answered by one
byte, ``S`` or ``N``. A server that answers ``N`` gets our connections in plain text, as
``prefer`` would have ended up; any other answer, or none, leaves asyncpg's default as it
was. The security is ``prefer``'s exactly: TLS whenever the server offers it, and, as with
``prefer``, no certificate checked (whoever must be sure of the server sets ``sslmode``).
A Unix socket never carries TLS (asyncpg does not ask there): connections to one need no
question. Anything said about TLS keeps asyncpg's behaviour untouched: an ``sslmode`` or any
other ``ssl*`` parameter, a ``service`` (its file may set ``sslmode``), or a ``PGSSL*`` /
``PGSERVICE*`` variable; so do several hosts (asyncpg picks among them).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Mapping
from typing import Final
from urllib.parse import parse_qsl, unquote, urlsplit

# Prefixes: sslmode, sslnegotiation, sslrootcert, sslcert, sslkey, sslcrl, sslpassword,
# ssl_min_protocol_version, ...; service, servicefile.
_TLS_PARAMETERS: Final = ("ssl", "service")
# PGSSLMODE, PGSSLNEGOTIATION, PGSSLROOTCERT, PGSSLCERT, ...; PGSERVICE, PGSERVICEFILE.
_TLS_VARIABLES: Final = ("PGSSL", "PGSERVICE")
SSL_REQUEST: Final = struct.pack("!ii", 8, 80877103)  # length, then the SSLRequest code
_DEFAULT_PORT: Final = 5432
UNIX_SOCKET: Final = "unix socket"


def tls_target(dsn: str, environ: Mapping[str, str]) -> tuple[str, int] | str | None:
    """Where to ask whether TLS is offered, if we may decide it ourselves.

    ``(host, port)``: ask that server; ``"unix socket"``: plain text, nothing to ask; None:
    leave TLS to asyncpg (TLS mentioned somewhere, or several hosts).
    """
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))  # the last value wins, as in asyncpg
    if any(key.startswith(_TLS_PARAMETERS) for key in query):
        return None
    if any(name.startswith(_TLS_VARIABLES) for name in environ):
        return None
    # Where asyncpg looks for the host, in its order: the URL's authority, its ``host``
    # parameter, $PGHOST; with none of them, a local socket (then localhost: several hosts).
    authority = parts.netloc.rpartition("@")[2]
    if authority:
        hosts = [unquote(spec) for spec in authority.split(",")]
    elif query.get("host"):
        hosts = query["host"].split(",")
    elif environ.get("PGHOST"):
        hosts = environ["PGHOST"].split(",")
    else:
        return None
    if len(hosts) != 1:
        return None
    host, port = _host_port(hosts[0], query.get("port") or environ.get("PGPORT"))
    if host.startswith("/"):
        return UNIX_SOCKET
    return (host, port) if port is not None else None


def _host_port(spec: str, default_port: str | None) -> tuple[str, int | None]:
    """``host``, ``host:port`` or ``[v6]:port`` (a Unix socket's directory keeps its colons)."""
    if spec.startswith("/"):
        return spec, None
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, _, port_text = spec.partition(":")
    port_text = port_text or default_port or str(_DEFAULT_PORT)
    return host, int(port_text) if port_text.isdigit() else None


async def declines_tls(host: str, port: int, timeout: float) -> bool:
    """True if the server answers an SSLRequest with ``N``; False for ``S``, anything else, or
    no answer in ``timeout`` seconds (asyncpg's default then does what it always did)."""
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(SSL_REQUEST)
            answer = await reader.read(1)
    except (OSError, TimeoutError):
        return False
    finally:
        if writer is not None:
            # The server takes a close after its answer as a client that went elsewhere: no
            # log line, no session.
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await writer.wait_closed()
    return answer == b"N"
