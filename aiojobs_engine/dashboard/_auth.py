"""Who may see the dashboard: HTTP basic auth, a check of the host application's, or both.

``basic_auth=(user, password)`` asks the browser for credentials (401 with a
``WWW-Authenticate`` challenge); ``auth`` is the host application's own check, called with
each request (plain or async, true to let it through; anything else is a 403), so a
dashboard mounted in an app with its own login can reuse it. Given both, both must pass.
Credentials are compared in constant time, over digests, so neither their content nor
their length leaks through timing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import inspect
from collections.abc import Awaitable, Callable
from typing import Final

from starlette.requests import Request

from .. import ConfigurationError

AuthCheck = Callable[[Request], Awaitable[bool] | bool]

REALM: Final = "aiojobs dashboard"


class Denied(Exception):
    """The request may not see the dashboard: 401 (ask for credentials) or 403."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Access:
    """The checks every request passes before any handler runs."""

    __slots__ = ("_auth", "_password", "_user")

    def __init__(self, *, basic_auth: tuple[str, str] | None = None, auth: AuthCheck | None = None) -> None:
        self._user: bytes | None = None
        self._password: bytes | None = None
        if basic_auth is not None:
            user, password = check_basic_auth(basic_auth)
            self._user, self._password = _digest(user.encode()), _digest(password.encode())
        if auth is not None and not callable(auth):
            raise ConfigurationError(f"auth must be a callable taking the request, got {auth!r}")
        self._auth = auth

    @property
    def is_open(self) -> bool:
        """No check at all: anyone who reaches the port sees the dashboard."""
        return self._user is None and self._auth is None

    async def check(self, request: Request) -> None:
        """Return if the request may go on; raise ``Denied`` otherwise."""
        if self._user is not None and self._password is not None and not self._basic_ok(request):
            raise Denied(401, "this dashboard needs a user name and password")
        if self._auth is not None:
            allowed = self._auth(request)
            if inspect.isawaitable(allowed):
                allowed = await allowed
            if allowed is not True:
                raise Denied(403, "you are not allowed to see this dashboard")

    def _basic_ok(self, request: Request) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        assert self._user is not None and self._password is not None
        # Both comparisons run whatever the first says: the time taken tells nothing.
        user_ok = hmac.compare_digest(_digest(user.encode()), self._user)
        password_ok = hmac.compare_digest(_digest(password.encode()), self._password)
        return bool(sep) and user_ok and password_ok


def check_basic_auth(value: object) -> tuple[str, str]:
    """A ``(user, password)`` pair: both non-empty strings, no ':' in the user name."""
    if (not isinstance(value, tuple | list) or len(value) != 2
            or not all(isinstance(part, str) and part for part in value)):
        raise ConfigurationError("basic_auth must be a (user, password) pair of non-empty strings")
    user, password = value
    if ":" in user:
        raise ConfigurationError("the basic_auth user name cannot contain ':'")
    return user, password


def challenge() -> dict[str, str]:
    return {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'}


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
