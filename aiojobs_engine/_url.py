"""Database URLs: which backend, where, and a form safe to print."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ._errors import ConfigurationError

ENV_VAR: Final = "AIOJOBS_DATABASE_URL"
DEFAULT_URL: Final = "sqlite:///aiojobs.sqlite3"
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@dataclass(frozen=True, slots=True)
class DatabaseURL:
    """A parsed database URL.

    ``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite:///:memory:``;
    ``postgresql://user:pw@host/db`` (or ``postgres://``), with an optional ``?schema=name``
    for the tables' schema.
    """

    kind: Literal["sqlite", "postgresql"]
    url: str
    path: str | None = None  # sqlite: the file, or ":memory:"
    dsn: str | None = None  # postgresql: the URL without our own parameters
    schema: str | None = None  # postgresql: the schema of the tables

    @property
    def is_memory(self) -> bool:
        return self.kind == "sqlite" and self.path == ":memory:"

    def redacted(self) -> str:
        """The URL with any password replaced, for logs and error messages."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))


def resolve_url(configured: str | None, given: str | None) -> str:
    """The URL an engine opens: configure(url=) > Engine(url) > $AIOJOBS_DATABASE_URL > default."""
    return configured or given or os.environ.get(ENV_VAR) or DEFAULT_URL


def parse_url(url: object) -> DatabaseURL:
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"database URL must be a non-empty string, got {url!r}")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigurationError(
            f"database URL {url!r} has no scheme; use sqlite:///path/to/file.db or postgresql://user@host/db"
        )
    scheme = scheme.lower()
    if scheme == "sqlite":
        return _parse_sqlite(url, rest)
    if scheme in ("postgresql", "postgres"):
        return _parse_postgres(url)
    raise ConfigurationError(
        f"unsupported database URL scheme {scheme!r}; use sqlite:///path/to/file.db or postgresql://user@host/db"
    )


def _parse_sqlite(url: str, rest: str) -> DatabaseURL:
    # sqlite:///x -> rest "/x" (relative x); sqlite:////x -> rest "//x" (absolute /x).
    if not rest.startswith("/") or len(rest) < 2:
        raise ConfigurationError(
            f"SQLite URL {url!r} must look like sqlite:///relative.db, sqlite:////absolute.db or sqlite:///:memory:"
        )
    path = rest[1:]
    if "?" in path:
        raise ConfigurationError(f"SQLite URL {url!r} takes no parameters")
    return DatabaseURL(kind="sqlite", url=url, path=path)


def _parse_postgres(url: str) -> DatabaseURL:
    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True)
    schema = None
    kept = []
    for key, value in params:
        if key == "schema":
            if not _SCHEMA_NAME.fullmatch(value):
                raise ConfigurationError(
                    f"schema must be a lower-case SQL identifier (letters, digits, '_'), got {value!r}"
                )
            schema = value
        else:
            kept.append((key, value))
    dsn = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(kept)))
    return DatabaseURL(kind="postgresql", url=url, dsn=dsn, schema=schema)
