"""``aiojobs dashboard``: serve the web dashboard with uvicorn (the ``dashboard`` extra).

It listens on 127.0.0.1 unless told otherwise, and says so loudly when told to listen
elsewhere with no authentication. On a loopback address it answers only to the loopback
names (localhost, 127.0.0.1, [::1], and the address given), so a web page whose name is
rebound to 127.0.0.1 cannot use it (DNS rebinding); ``--allowed-host`` names others. The
socket is bound here, before uvicorn starts, so a port in use is one clear error (exit 1)
rather than a log line. The engine is opened once to check the database (a bad URL or
schema is a clean error), then by the dashboard's own lifespan for as long as it serves.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from typing import Final

from .. import Engine
from ._errors import EXIT_OK, CommandFailed, UsageError

HELP: Final = "serve the web dashboard (pip install 'aiojobs_engine[dashboard]')"
DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8686
BASIC_AUTH_ENV: Final = "AIOJOBS_DASHBOARD_BASIC_AUTH"
SECRET_ENV: Final = "AIOJOBS_DASHBOARD_SECRET"  # noqa: S105 - the variable's name, not a secret
LOOPBACK_HOSTS: Final = ("localhost", "127.0.0.1", "::1")  # what a loopback dashboard answers to


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default: {DEFAULT_HOST}, this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    parser.add_argument("--basic-auth", metavar="USER:PASSWORD",
                        help=f"ask browsers for this user and password (default: ${BASIC_AUTH_ENV}; the "
                             "environment keeps it out of the process list)")
    parser.add_argument("--read-only", action="store_true", help="show everything, allow no action")
    parser.add_argument("--secret-key", metavar="KEY",
                        help=f"key signing the CSRF tokens (default: ${SECRET_ENV}, else random per start)")
    parser.add_argument("--allowed-host", dest="allowed_hosts", action="append", metavar="HOST",
                        help="a host name the dashboard answers to, any port ('*.example.com': any name under "
                             "it, '*': any); repeat it for several (default on a loopback address: localhost, "
                             "127.0.0.1, [::1]; else any)")
    parser.add_argument("--root-path", default="", metavar="PATH",
                        help="the path prefix a reverse proxy serves the dashboard under, e.g. /jobs")
    parser.add_argument("--refresh", type=float, default=5.0, metavar="SECONDS",
                        help="seconds between live refreshes of an open page's counts and lists; 0 turns them "
                             "off (default 5)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info",
                        help="default: info")
    parser.set_defaults(opens_itself=True, precheck=prepare)


def prepare(engine: Engine, args: argparse.Namespace) -> None:
    """Check the options and that the extra is installed, before any event loop starts."""
    try:
        import uvicorn  # noqa: F401

        from ..dashboard._hosts import HostCheck
    except ImportError as exc:
        raise UsageError(f"aiojobs dashboard needs the dashboard extra ({exc}): "
                         "pip install 'aiojobs_engine[dashboard]'") from exc
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    if not (args.refresh == 0 or 0.1 <= args.refresh <= 3600):
        raise UsageError(f"--refresh must be 0 (off) or between 0.1 and 3600 seconds, got {args.refresh:g}")
    credentials = args.basic_auth or os.environ.get(BASIC_AUTH_ENV) or None
    if credentials is not None:
        user, sep, password = credentials.partition(":")
        if not sep or not user or not password:
            raise UsageError("--basic-auth (or $AIOJOBS_DASHBOARD_BASIC_AUTH) must look like user:password")
        args.basic_auth = (user, password)
    args.secret_key = args.secret_key or os.environ.get(SECRET_ENV) or None
    if args.root_path and not args.root_path.startswith("/"):
        raise UsageError(f"--root-path must start with '/', got {args.root_path!r}")
    args.allowed_hosts = allowed_hosts_for(args.host, args.allowed_hosts)
    if args.allowed_hosts is not None:
        HostCheck(args.allowed_hosts)  # a bad name is a usage error now, not a failure later
    warning = exposure_warning(args.host, protected=args.basic_auth is not None, read_only=args.read_only)
    if warning:
        print(f"aiojobs: warning: {warning}", file=sys.stderr)


def exposure_warning(host: str, *, protected: bool, read_only: bool) -> str | None:
    """What to say when the dashboard is reachable from other machines without a password."""
    if protected or is_loopback(host):
        return None
    what = "see every job's arguments" if read_only else "see every job's arguments and retry, cancel or delete jobs"
    return (f"the dashboard listens on {host} with no authentication: anyone who can reach this port can {what} "
            "(use --basic-auth, or keep the default --host 127.0.0.1)")


def allowed_hosts_for(host: str, given: list[str] | None) -> list[str] | None:
    """The host names to answer to: those given; else, listening on a loopback address, the
    loopback names and that address; else any (None: reachable by whatever names lead here)."""
    if given:
        return list(given)
    if not is_loopback(host):
        return None
    bound = host.strip("[]").lower()
    return [*LOOPBACK_HOSTS, *([bound] if bound not in LOOPBACK_HOSTS else [])]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def serve(engine: Engine, args: argparse.Namespace) -> int:
    import uvicorn

    from ..dashboard import dashboard

    async with engine:  # a bad URL, an unreachable database, a newer schema: fail here, clearly
        pass
    app = dashboard(engine, read_only=args.read_only, basic_auth=args.basic_auth, secret_key=args.secret_key,
                    allowed_hosts=args.allowed_hosts, refresh_interval=args.refresh)
    listener = _listen(args.host, args.port)
    host, port = listener.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    mode = " (read-only)" if args.read_only else ""
    print(f"aiojobs: dashboard of {engine.url} at http://{shown}:{port}{args.root_path}/{mode}", file=sys.stderr)
    config = uvicorn.Config(app, log_level=args.log_level, root_path=args.root_path, server_header=False,
                            lifespan="on")
    server = uvicorn.Server(config)
    try:
        await server.serve(sockets=[listener])
    finally:
        listener.close()
    if not server.started:
        raise CommandFailed("the dashboard did not start (see the log above)")
    return EXIT_OK


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    try:
        return socket.create_server((host.strip("[]"), port), family=family, backlog=128)
    except OSError as exc:
        raise CommandFailed(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
