"""CSRF protection for the dashboard's actions: a signed double-submit token.

Every page sets a cookie holding ``<random>.<HMAC-SHA256(key, random)>`` and puts the same
value in each of its forms. An action (always a POST) is accepted only if the cookie's
signature is right and the form sends the same value back. A page on another site can
make the browser send the cookie, but cannot read it or the page, so it cannot fill the
field; it cannot plant a cookie of its own choosing either (a sibling subdomain could),
because it cannot sign one without the key. The cookie is also ``SameSite=Strict`` and
``HttpOnly``. The key is given to ``dashboard(secret_key=...)`` — needed when several
processes serve one dashboard — or made at start-up, which only means that a restart asks
open pages to reload before their next action.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final

from .. import ConfigurationError

COOKIE: Final = "aiojobs_csrf"
FIELD: Final = "csrf_token"
HEADER: Final = "x-csrf-token"

_PURPOSE: Final = b"aiojobs-dashboard-csrf:"


class CsrfSigner:
    """Issues and checks tokens signed with one key."""

    __slots__ = ("_key",)

    def __init__(self, key: str | bytes | None = None) -> None:
        if key is None:
            self._key = secrets.token_bytes(32)
        else:
            raw = key.encode() if isinstance(key, str) else bytes(key)
            if len(raw) < 16:
                raise ConfigurationError("secret_key must be at least 16 bytes (use secrets.token_hex(32))")
            self._key = raw

    def issue(self) -> str:
        """A fresh token for a new visitor."""
        nonce = secrets.token_urlsafe(24)
        return f"{nonce}.{self._sign(nonce)}"

    def is_valid(self, token: str | None) -> bool:
        """Whether ``token`` was signed with this key (a cookie worth keeping)."""
        if not token or len(token) > 200:
            return False
        nonce, _, signature = token.partition(".")
        return bool(nonce) and hmac.compare_digest(_bytes(signature), _bytes(self._sign(nonce)))

    def check(self, cookie: str | None, submitted: str | None) -> bool:
        """An action is allowed: the cookie is ours and the form (or header) echoes it."""
        if not submitted or not self.is_valid(cookie):
            return False
        assert cookie is not None
        return hmac.compare_digest(_bytes(cookie), _bytes(submitted))

    def _sign(self, nonce: str) -> str:
        digest = hmac.new(self._key, _PURPOSE + nonce.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "replace")
