"""``--config aiojobs.toml``: worker groups (and the app and URL) declared for the command line.

    app = "myapp.jobs:engine"          # optional; --app wins
    url = "postgresql://db/app"        # optional; --url wins

    [groups.mail]
    queues = ["email"]                 # or "*" (or leave out): the engine's queues
    processes = 2                      # default: one per core
    concurrency = 5
    max_attempts = 3
    poll_interval = 0.5
    completed_retention = 3600         # seconds, or "forever"

A group declared here replaces the engine's group of the same name, so operators can change
a process count without changing code. Every mistake is a ``UsageError`` naming the file.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import ConfigurationError
from .._groups import WorkerGroup
from ._errors import UsageError

_TOP_LEVEL = frozenset({"app", "url", "groups"})
_FOREVER = "forever"


@dataclass(frozen=True)
class ConfigFile:
    path: Path
    app: str | None
    url: str | None
    groups: tuple[WorkerGroup, ...]


def load_config(path_text: str) -> ConfigFile:
    path = Path(path_text).expanduser().resolve()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--config {path_text}: no such file") from None
    except OSError as exc:
        raise UsageError(f"--config {path_text}: cannot read it: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"--config {path_text}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - _TOP_LEVEL)
    if unknown:
        raise UsageError(f"--config {path_text}: unknown key(s) {', '.join(map(repr, unknown))}; "
                         f"accepted: {', '.join(sorted(_TOP_LEVEL))}")
    groups_table = data.get("groups", {})
    if not isinstance(groups_table, dict):
        raise UsageError(f"--config {path_text}: groups must be tables, as [groups.NAME]")
    groups = tuple(_group(path_text, name, table) for name, table in groups_table.items())
    return ConfigFile(path=path, app=_text(path_text, data, "app"), url=_text(path_text, data, "url"),
                      groups=groups)


def _group(path_text: str, name: str, table: object) -> WorkerGroup:
    if not isinstance(table, dict):
        raise UsageError(f"--config {path_text}: groups.{name} must be a table ([groups.{name}])")
    values: dict[str, Any] = dict(table)
    if values.get("queues") == "*":
        values["queues"] = None
    for key, value in values.items():
        if key.endswith("_retention") and value == _FOREVER:
            values[key] = None
    try:
        return WorkerGroup(name, **values)
    except TypeError as exc:  # a value of the wrong type for a keyword WorkerGroup itself takes
        raise UsageError(f"--config {path_text}: groups.{name}: {exc}") from None
    except ConfigurationError as exc:
        raise UsageError(f"--config {path_text}: {exc}") from None


def _text(path_text: str, data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise UsageError(f"--config {path_text}: {key} must be a string, got {value!r}")
    return value
