"""PostgreSQL backend package: ``_backend.py`` plus its ``queries.sql`` and ``migrations/``."""

from ._backend import PostgresBackend

__all__ = ["PostgresBackend"]
