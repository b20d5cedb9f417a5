"""The PostgreSQL statements: ``queries.sql`` and ``migrations/``, rendered for one schema.

Statements are written with ``:name`` parameters (as the SQLite backend's) and compiled once
to asyncpg's ``$n``. Table names are qualified with ``__schema__`` and notifications use
``__channel__``; both are filled in here, once per schema, from a validated schema name,
quoted all the same. Values are never rendered into SQL: they are always bound.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from .._sqlfiles import load_migrations, load_queries

_PACKAGE: Final = __package__ or "aiojobs_engine._backends.postgres"
_RAW_QUERIES: Final = load_queries(_PACKAGE)
MIGRATIONS: Final = load_migrations(_PACKAGE)
_MAX_IDENTIFIER: Final = 63  # NAMEDATALEN - 1: pg_notify refuses longer channel names


@dataclass(frozen=True, slots=True)
class Query:
    """A statement of ``queries.sql`` with its ``:name`` parameters turned into ``$n``."""

    name: str
    sql: str
    params: tuple[str, ...]

    def args(self, values: Mapping[str, object]) -> list[object]:
        return [values[param] for param in self.params]


# String literals, quoted identifiers and comments are copied as they are; ":name" outside
# them (not the "::" of a cast) is a parameter.
_TOKENS: Final = re.compile(r"""'(?:[^']|'')*'|"[^"]*"|--[^\n]*|(?<![:\w]):([a-z_][a-z0-9_]*)""")


def compile_query(name: str, sql: str) -> Query:
    params: list[str] = []

    def replace(match: re.Match[str]) -> str:
        param = match.group(1)
        if param is None:
            return match.group(0)
        if param not in params:
            params.append(param)
        return f"${params.index(param) + 1}"

    return Query(name, _TOKENS.sub(replace, sql), tuple(params))


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def channel_for(schema: str) -> str:
    """The notification channel of a schema: ``aiojobs_<schema>`` (hashed if too long)."""
    channel = f"aiojobs_{schema}"
    if len(channel) <= _MAX_IDENTIFIER:
        return channel
    return "aiojobs_" + hashlib.sha256(schema.encode()).hexdigest()[:24]


def render(sql: str, schema: str) -> str:
    """Fill in the schema and channel placeholders of ``sql``."""
    return sql.replace("__schema__", quote_ident(schema)).replace("__channel__", _quote_literal(channel_for(schema)))


@functools.lru_cache(maxsize=16)
def queries_for(schema: str) -> Mapping[str, Query]:
    """Every statement, rendered for ``schema`` and compiled (cached per schema)."""
    return {name: compile_query(name, render(sql, schema)) for name, sql in _RAW_QUERIES.items()}
