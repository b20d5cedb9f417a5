"""SQL kept in ``.sql`` files beside each backend, loaded once with importlib.resources.

A query file holds blocks headed ``-- name: some_query``; migrations are files named
``NNNN_description.sql`` in the backend's ``migrations`` folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_HEADER = re.compile(r"^-- name: ([a-z_]+)\s*$", re.MULTILINE)
_MIGRATION = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


def load_queries(package: str, filename: str = "queries.sql") -> dict[str, str]:
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    parts = _HEADER.split(text)
    queries = {name: _without_comments(body) for name, body in zip(parts[1::2], parts[2::2], strict=True)}
    if not queries:
        raise RuntimeError(f"no queries found in {package}/{filename}")
    return queries


def _without_comments(body: str) -> str:
    """The statement without its leading comment lines and final semicolon."""
    lines = [line for line in body.strip().splitlines() if not line.lstrip().startswith("--")]
    return "\n".join(lines).strip().rstrip(";")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(package: str) -> list[Migration]:
    folder = resources.files(package).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations of {package} must be numbered 1..n without gaps, found {versions}")
    return found
