"""A console for an embedded engine whose application configured no logging.

The package logger has only a ``NullHandler``, so under a server that configures its own
loggers and not the root one (uvicorn, gunicorn), or in a script that never calls
``logging.basicConfig``, nothing the engine logs is seen — not even a failed job, since the
``NullHandler`` also keeps Python's last-resort handler away. ``engine.run()``,
``engine.running()``, ``engine.workoff()`` and the framework helpers therefore take
``log_level``: while they run, ``console_logging(level)`` puts one stderr handler on the
package logger, with a readable line that carries the job's context, if and only if the
application has no handler of its own on the logger's chain (root included).

Invariants:

- at most one console handler per logger, whatever the number of engines or nested runs
  (a count of users; the last one out removes it and puts the logger's level back);
- the application's set-up always wins: the handler is not installed when a handler exists,
  and stands down (emits nothing) as soon as one appears later, so lines are never doubled;
- ``None`` installs nothing: the library convention, for applications that decide.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final, TypeAlias

from ._errors import ConfigurationError
from ._log import logger

__all__ = ["DEFAULT_LOG_LEVEL", "LogLevel", "check_log_level", "console_logging"]

LogLevel: TypeAlias = str | int | None
"""``"debug"``, ``"info"``, ``"warning"``, ``"error"``, ``"critical"`` (any case), a
``logging`` level number, or ``None`` for no console at all."""

DEFAULT_LOG_LEVEL: Final = "warning"
"""WARNING: retries, failures, hand-backs and outages are seen, one line each; the INFO line
per completed job is not, so a busy web console is not flooded. It is the threshold of
Python's own last-resort handler, which the library's NullHandler would otherwise silence."""

CONSOLE_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_NAMES: Final = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
                 "error": logging.ERROR, "critical": logging.CRITICAL}

# Shown after the message, in this order, when the record has them: the job's context.
_CONTEXT: Final = (("event", "event"), ("job_id", "job_id"), ("job_name", "job"), ("queue", "queue"),
                   ("attempt", "attempt"), ("engine_id", "engine"))

_lock: Final = threading.Lock()  # engines on several threads' loops share the package logger


def check_log_level(value: object, what: str = "log_level") -> int | None:
    """The level number for ``value``, or None; ConfigurationError if it is not a level."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in _NAMES:
        return _NAMES[value.strip().lower()]
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ConfigurationError(
        f"{what} must be one of {', '.join(repr(n) for n in _NAMES)}, a logging level number, "
        f"or None (no console), got {value!r}"
    )


class ContextFormatter(logging.Formatter):
    """``CONSOLE_FORMAT``, then the record's job context: ``[event=job.failed job_id=7 …]``."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        # formatMessage, not format: the context goes on the first line, before a traceback.
        fields = [f"{label}={getattr(record, key)}" for key, label in _CONTEXT
                  if getattr(record, key, None) not in (None, "")]
        line = super().formatMessage(record)
        return f"{line} [{' '.join(fields)}]" if fields else line


class ConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]  # generic only in typeshed
    """Writes to the current ``sys.stderr`` (looked up per record, as Python's last-resort
    handler does, so a replaced stderr is followed), unless the application has a handler."""

    def __init__(self, level: int, owner: logging.Logger) -> None:
        super().__init__(sys.stderr)
        self.setLevel(level)
        self.setFormatter(ContextFormatter(CONSOLE_FORMAT))
        self.owner = owner
        self.users = 0
        self.set_level: int | None = None  # the owner's level we set, to put back

    def emit(self, record: logging.LogRecord) -> None:
        if configured_elsewhere(self.owner, ignore=self):
            return  # the application set up logging after we came: its handler has the record
        self.stream = sys.stderr
        super().emit(record)


def configured_elsewhere(target: logging.Logger, *, ignore: logging.Handler | None = None) -> bool:
    """Whether a record of ``target`` reaches a handler the application added (a
    NullHandler, or ``ignore``, is not one): the chain of loggers it propagates through."""
    current: logging.Logger | None = target
    while current is not None:
        if any(h is not ignore and not isinstance(h, logging.NullHandler) for h in current.handlers):
            return True
        if not current.propagate:
            return False
        current = current.parent
    return False


@contextmanager
def console_logging(level: LogLevel, target: logging.Logger = logger) -> Iterator[None]:
    """While the block runs, log ``target`` at ``level`` and above to stderr if the
    application configured no handler (see the module docstring)."""
    number = check_log_level(level)
    handler = None if number is None else _take(target, number)
    try:
        yield
    finally:
        if handler is not None:
            _release(target, handler)


def _take(target: logging.Logger, level: int) -> ConsoleHandler | None:
    with _lock:
        handler = next((h for h in target.handlers if isinstance(h, ConsoleHandler)), None)
        if handler is None:
            if configured_elsewhere(target):
                return None
            handler = ConsoleHandler(level, target)
            if target.level == logging.NOTSET:
                # Without this, root's WARNING would drop INFO records before any handler.
                # A level the application set on our logger itself is its choice: kept.
                target.setLevel(level)
                handler.set_level = level
            target.addHandler(handler)
        handler.users += 1
        return handler


def _release(target: logging.Logger, handler: ConsoleHandler) -> None:
    with _lock:
        handler.users -= 1
        if handler.users > 0:
            return
        target.removeHandler(handler)
        if handler.set_level is not None and target.level == handler.set_level:
            target.setLevel(logging.NOTSET)
