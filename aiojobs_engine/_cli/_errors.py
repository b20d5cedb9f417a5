"""The two ways a command ends badly, and the exit code each maps to.

``UsageError`` (exit 2): the command line cannot be acted on (bad ``--app``, a missing
option, a refusal to guess). ``CommandFailed`` (exit 1): the command ran and could not do
what was asked (an unknown job id, a job in the wrong state). Errors of the engine map
the same way: ``ConfigurationError`` is bad usage, every other ``AiojobsError`` a failure.
Neither ever leaves ``main()``.
"""

from __future__ import annotations

from typing import Final

from .. import AiojobsError

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2


class UsageError(AiojobsError):
    """The command line cannot be acted on; exit code 2."""


class CommandFailed(AiojobsError):
    """The command ran and failed; exit code 1."""
