"""SQLite backend package: ``_backend.py`` plus its ``queries.sql`` and ``migrations/``."""

from ._backend import SQLiteBackend

__all__ = ["SQLiteBackend"]
