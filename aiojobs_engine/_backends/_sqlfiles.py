"""SQL kept in ``.sql`` files beside each backend, loaded once.

A query file holds blocks headed ``-- name: some_query``; a line ``-- include: other`` in a
block stands for the text of block ``other`` (a fragment several statements share).
Migrations are files named ``NNNN_description.sql`` in the backend's ``migrations`` folder.

Files are read through the package's loader (``pkgutil.get_data``), which also reads from
a zip. importlib.resources would do the same but weighs on every engine process (it
imports zipfile, tempfile, shutil, lzma, bz2; see
docs/decisions/2026-12-04-sql-files-without-importlib-resources.md); it is only imported
to list a migrations folder that is not on the file system.
"""

from __future__ import annotations

import os
import pkgutil
import re
import sys
from dataclasses import dataclass

_HEADER = re.compile(r"^-- name: ([a-z_]+)\s*$", re.MULTILINE)
_INCLUDE = re.compile(r"^\s*-- include: ([a-z_]+)\s*$", re.MULTILINE)
_MIGRATION = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


def load_queries(package: str, filename: str = "queries.sql") -> dict[str, str]:
    text = _read(package, filename)
    parts = _HEADER.split(text)
    queries = {name: _without_comments(body) for name, body in zip(parts[1::2], parts[2::2], strict=True)}
    queries = {name: _INCLUDE.sub(lambda m: queries[m[1]], body) for name, body in queries.items()}
    if not queries:
        raise RuntimeError(f"no queries found in {package}/{filename}")
    return queries


def _without_comments(body: str) -> str:
    """The statement without its leading comment lines and final semicolon."""
    lines = [line for line in body.strip().splitlines()
             if not line.lstrip().startswith("--") or _INCLUDE.fullmatch(line)]
    return "\n".join(lines).strip().rstrip(";")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(package: str) -> list[Migration]:
    found = []
    for filename in _migration_files(package):
        match = _MIGRATION.fullmatch(filename)
        if match:
            found.append(Migration(int(match[1]), match[2], _read(package, f"migrations/{filename}")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations of {package} must be numbered 1..n without gaps, found {versions}")
    return found


def _read(package: str, resource: str) -> str:
    data = pkgutil.get_data(package, resource)
    if data is None:
        raise RuntimeError(f"cannot read {resource} of {package}: its loader does not read resources")
    return data.decode("utf-8")


def _migration_files(package: str) -> list[str]:
    __import__(package)
    for location in sys.modules[package].__path__:
        folder = os.path.join(location, "migrations")
        if os.path.isdir(folder):
            return os.listdir(folder)
    from importlib import resources  # not on the file system (a zip): see the module's docstring

    return [entry.name for entry in resources.files(package).joinpath("migrations").iterdir()]
