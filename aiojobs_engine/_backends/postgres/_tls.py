"""TLS on loopback: whether our connections skip it when nothing asks for it.

asyncpg's default, like libpq's, is ``sslmode=prefer``: ask the server for TLS, and go on in
plain text if it declines. Asking is not free even when the server declines: asyncpg builds
an ``ssl.SSLContext`` for every connect, and the first one initialises OpenSSL in the
process, about 0.5 MiB of resident memory for a worker that never speaks TLS (measured: 0.8
against 0.35 MiB for a process's first connection), plus a round trip per connect.

On loopback TLS protects nothing: the bytes never leave the host, reading them there takes
the privileges that read the process's memory as well, and ``prefer`` checks no certificate,
so it never proved whom we talk to either. So when every host of the URL is loopback
(127.0.0.0/8, ``::1``, ``localhost``; a Unix socket, which asyncpg never wraps in TLS, counts
too) and neither the URL nor the environment says anything about TLS, our connections
start in plain text. Anything said about it keeps asyncpg's behaviour exactly: an
``sslmode`` or any other ``ssl*`` parameter, a ``service`` (its file may set ``sslmode``),
or a ``PGSSL*`` / ``PGSERVICE*`` variable.

A server that refuses a plain connection (a ``hostssl``-only rule in ``pg_hba.conf``) is
then asked asyncpg's default way (see ``Connections``), so whatever connected before this
still connects.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Final
from urllib.parse import parse_qsl, unquote, urlsplit

# Prefixes: sslmode, sslnegotiation, sslrootcert, sslcert, sslkey, sslcrl, sslpassword,
# ssl_min_protocol_version, ...; service, servicefile.
_TLS_PARAMETERS: Final = ("ssl", "service")
# PGSSLMODE, PGSSLNEGOTIATION, PGSSLROOTCERT, PGSSLCERT, ...; PGSERVICE, PGSERVICEFILE.
_TLS_VARIABLES: Final = ("PGSSL", "PGSERVICE")


def plain_on_loopback(dsn: str, environ: Mapping[str, str]) -> bool:
    """True if connections to ``dsn`` may skip TLS: loopback only, and TLS never mentioned."""
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))  # the last value wins, as in asyncpg
    if any(key.startswith(_TLS_PARAMETERS) for key in query):
        return False
    if any(name.startswith(_TLS_VARIABLES) for name in environ):
        return False
    # Where asyncpg looks for the hosts, in its order: the URL's authority, its ``host``
    # parameter, $PGHOST; with none of them, local sockets and ``localhost`` (all loopback).
    authority = parts.netloc.partition("@")[2] if "@" in parts.netloc else parts.netloc
    if authority:
        hosts = [unquote(host) for host in _hosts(authority)]
    elif query.get("host"):
        hosts = _hosts(query["host"])
    elif environ.get("PGHOST"):
        hosts = _hosts(environ["PGHOST"])
    else:
        return True
    return all(_is_loopback(host) for host in hosts)


def _hosts(hostlist: str) -> list[str]:
    """The host names of ``host[:port],...`` (IPv6 addresses in brackets)."""
    hosts = []
    for spec in hostlist.split(","):
        if spec.startswith("["):
            hosts.append(spec[1:].partition("]")[0])
        elif spec.startswith("/"):
            hosts.append(spec)  # a Unix socket's directory: may hold ':' in its name
        else:
            hosts.append(spec.partition(":")[0])
    return hosts


def _is_loopback(host: str) -> bool:
    if host.startswith("/") or host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: it could resolve anywhere
        return False
