"""Which host names the dashboard answers to, and which pages its actions may come from.

The attack is DNS rebinding: a page on ``evil.example`` whose name the attacker then points
at 127.0.0.1 reaches a dashboard on this machine as its own origin, so the browser lets it
read the pages (job arguments, the CSRF token in the forms) and post the forms. What it
cannot change is the ``Host`` header: the browser sends the name in its address bar,
``evil.example``. So a dashboard given ``allowed_hosts`` answers any other name with a 400,
before anything else runs (before authentication too: a rebinding page cannot even make the
browser ask for the password).

A pattern is a host name (``jobs.example.com``), an IP address (``127.0.0.1``, ``::1`` or
``[::1]``), ``*.example.com`` (any name under example.com, not example.com itself) or ``*``
(any name). Names compare without case and any port matches. With ``allowed_hosts`` given,
an action (a POST) whose ``Origin`` — or, without one, ``Referer`` — names a host that is not
allowed is refused too (403), behind the CSRF token: our own pages send their real origin
(a cross-origin POST under our ``Referrer-Policy: same-origin`` would send ``null``). A
client that sends neither, such as a script with the ``X-CSRF-Token`` header, passes.

With ``allowed_hosts=None`` (the default of ``dashboard()``) there is no check at all: the
application the dashboard is mounted in decides how it is reached. ``aiojobs dashboard``
on a loopback address allows the loopback names only, unless told otherwise.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

from starlette.requests import Request

from .. import ConfigurationError
from ._auth import Denied

WRONG_HOST: Final = ("Invalid host header: this dashboard does not answer to that name (see allowed_hosts, or "
                     "aiojobs dashboard --allowed-host)")
WRONG_ORIGIN: Final = ("This action comes from a page that is not one of this dashboard's allowed hosts (its Origin "
                       "or Referer header): open the dashboard under an allowed name and try again.")
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


class HostCheck:
    """The allowed host patterns of one dashboard, and the checks that use them."""

    __slots__ = ("_any", "_names", "_suffixes")

    def __init__(self, allowed: Iterable[str]) -> None:
        if isinstance(allowed, str | bytes) or not isinstance(allowed, Iterable):
            raise ConfigurationError(f"allowed_hosts must be a list of host names, got {allowed!r}")
        patterns = [_pattern(value) for value in allowed]
        if not patterns:
            raise ConfigurationError("allowed_hosts must name at least one host (or be None: no check)")
        self._any = "*" in patterns
        self._suffixes = tuple(p[1:] for p in patterns if p.startswith("*."))  # ".example.com"
        self._names = frozenset(p for p in patterns if not p.startswith("*"))

    def allows(self, host: str | None) -> bool:
        """Whether ``host`` (a name or address, without port or brackets) is allowed."""
        if host is None:
            return False
        if self._any:
            return True
        host = _normal(host)
        return host in self._names or host.endswith(self._suffixes)

    def check(self, request: Request) -> None:
        """Return if the request may go on; raise ``Denied`` (400, 403) otherwise."""
        if not self.allows(host_of(request.headers.get("host", ""))):
            raise Denied(400, WRONG_HOST)
        if request.method in _SAFE_METHODS:
            return
        origin = request.headers.get("origin")
        source = origin if origin is not None else request.headers.get("referer")
        if source is not None and not self.allows(_url_host(source)):
            raise Denied(403, WRONG_ORIGIN)


def host_of(header: str) -> str | None:
    """The host of a ``Host`` header (``name[:port]``, ``[v6]:port``); None when malformed."""
    value = header.strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1:]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
    else:
        host, sep, port = value.partition(":")
        if sep and not port.isdigit():
            return None
    return host or None


def _url_host(url: str) -> str | None:
    try:
        return urlsplit(url.strip()).hostname  # lower case, no brackets; None for "null"
    except ValueError:
        return None


def _pattern(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"allowed_hosts takes host names (non-empty strings), got {value!r}")
    pattern = value.strip().lower().rstrip(".")  # "localhost." is "localhost"
    if pattern.startswith("[") and pattern.endswith("]"):
        pattern = pattern[1:-1]
    if pattern == "*":
        return pattern
    name = pattern[2:] if pattern.startswith("*.") else pattern
    if not name or "*" in name or "/" in name or any(c.isspace() for c in name):
        raise ConfigurationError(f"allowed_hosts: {value!r} is not a host name, an IP address, '*.domain' or '*'")
    if ":" in name:
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            raise ConfigurationError(f"allowed_hosts takes host names without a port (any port matches), "
                                     f"got {value!r}") from None
    return _normal(pattern)


def _normal(host: str) -> str:
    """Lower case, no final dot, an IPv6 address in its short form (``0::1`` is ``::1``)."""
    host = host.lower().rstrip(".")
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host).compressed
        except ValueError:
            return host
    return host
