"""Which commands may create a database, and the check that the others find one.

Opening an engine creates a SQLite file that is not there (and its tables), so a command
that only looks or controls (``jobs``, ``queues``, ``cron``, ``prune``, ``clear``,
``healthcheck``, ``dashboard``) would answer "no jobs" about a database it has just made,
next to the one the user meant. Those commands check first: with no ``--app``, ``--url``
or ``$AIOJOBS_DATABASE_URL`` they say how to name a database, and a SQLite file that does
not exist is refused by path. Commands that bring a database into use (``migrate``,
``work``, ``worker``, ``workoff``, ``enqueue``, ``start``) may create it; the detached
controls (``stop``, ``restart``, ``status``) never open one.
"""

from __future__ import annotations

import enum
import os
from argparse import Namespace
from pathlib import Path

from .. import Engine
from .._url import DEFAULT_URL, ENV_VAR, parse_url
from ._app import APP_ENV
from ._errors import UsageError


class Database(enum.Enum):
    """What a command does with the database: set as ``database`` on its parser."""

    EXISTING = "existing"  # opens it, and it must be there
    CREATES = "creates"  # opens it, creating it if need be
    NONE = "none"  # never opens it


def command_name(args: Namespace) -> str:
    """``jobs list``, ``queues``, ``work``: the command as typed, for messages."""
    words = [args.command]
    action = getattr(args, f"{args.command}_command", None)
    if action:
        words.append(action)
    return " ".join(words)


def require_existing(engine: Engine, args: Namespace, *, named: bool) -> None:
    """Refuse, before anything is opened, a command that would create its database, and
    make the engine's opening check the schema rather than migrate it.

    ``named``: an application, a URL (option or config file) or the environment variable
    says which database this is; otherwise the engine falls back to the default file.
    """
    if getattr(args, "database", Database.EXISTING) is not Database.EXISTING:
        return
    # Nor does it create or upgrade the tables: an empty or outdated schema is refused,
    # naming `aiojobs migrate` (an upgrade is for the operator to run, not a side effect).
    engine.configure(auto_migrate=False)
    path = missing_file(engine)
    if path is None:
        return
    command = command_name(args)
    if not named:
        raise UsageError(
            f"{command} needs a database and none is named: pass --url (sqlite:///path/to/jobs.db or "
            f"postgresql://user@host/db) or set ${ENV_VAR}, or pass --app module:engine (or set ${APP_ENV}) "
            f"naming your application's engine; the default, {DEFAULT_URL}, is not here "
            f"({path.resolve()} does not exist) and {command} creates no database"
        )
    raise UsageError(
        f"{command}: no database at {path.resolve()} (from {engine.url}); check the path, or create it with "
        "`aiojobs migrate` (or by starting a worker); this command creates no database"
    )


def missing_file(engine: Engine) -> Path | None:
    """The engine's SQLite file if it does not exist (opening would create it), else None."""
    url = parse_url(engine.url)
    if url.kind != "sqlite" or url.is_memory or url.path is None:
        return None  # PostgreSQL creates no database on connect: a missing one fails to connect, by name
    path = Path(url.path)
    return None if path.exists() else path


def is_named(*, app: str | None, url: str | None) -> bool:
    return app is not None or url is not None or bool(os.environ.get(ENV_VAR))
