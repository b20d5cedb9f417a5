"""Storage backends behind one interface (``Backend``), chosen by the database URL."""

from __future__ import annotations

from .._url import DatabaseURL
from ._protocol import Backend


def make_backend(url: DatabaseURL) -> Backend:
    """A closed backend for ``url``; call ``open()`` on it."""
    if url.kind == "sqlite":
        from .sqlite import SQLiteBackend

        assert url.path is not None
        return SQLiteBackend(url.path)
    from .postgres import PostgresBackend

    assert url.dsn is not None
    return PostgresBackend(url.dsn, schema=url.schema)


__all__ = ["Backend", "make_backend"]
