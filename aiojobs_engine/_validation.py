"""Checks shared by every public entry point; each error quotes the bad value and what is accepted."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Final

from ._errors import ConfigurationError

# Queue and job names end up in SQL parameters, log lines, CLI tables and URLs of the
# dashboard: keep them to a conservative, printable alphabet.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,127}")


def check_name(value: object, what: str) -> str:
    """Return ``value`` if it is a valid queue or job name, else raise ConfigurationError."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ConfigurationError(
            f"{what} must be 1-128 characters of letters, digits, '_', '.', ':' or '-', "
            f"not starting with a punctuation mark; got {value!r}"
        )
    return value


# The longest a job can be put off (a delay, a snooze, a retry delay): 100 years. Both
# backends store times far beyond now + this; PostgreSQL refuses intervals much larger.
MAX_DELAY: Final = 100 * 365.25 * 86_400.0


def seconds_from(value: object, what: str, *, allow_zero: bool = True, maximum: float | None = None) -> float:
    """Seconds as a float from a number or a timedelta; finite, not negative, at most ``maximum``."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            seconds = math.inf
    else:
        raise ConfigurationError(f"{what} must be a number of seconds or a timedelta, got {value!r}")
    too_big = maximum is not None and seconds > maximum  # +inf included
    if math.isnan(seconds) or seconds < 0 or (seconds == 0 and not allow_zero) or (math.isinf(seconds) and not too_big):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(f"{what} must be {bound} seconds, got {value!r}")
    if maximum is not None and too_big:
        raise ConfigurationError(
            f"{what} must be at most {maximum:.0f} seconds ({maximum / _YEAR:g} years), got {value!r}"
        )
    return seconds


_YEAR: Final = 365.25 * 86_400


def check_int(value: object, what: str, *, minimum: int, maximum: int | None = None) -> int:
    """An ``int`` (not a bool) within ``[minimum, maximum]``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigurationError(f"{what} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        accepted = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ConfigurationError(f"{what} must be {accepted}, got {value!r}")
    return value


def check_bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{what} must be True or False, got {value!r}")
    return value


def check_number(value: object, what: str, *, minimum: float, maximum: float) -> float:
    """A real number (not a bool) within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"{what} must be a number, got {value!r}")
    if not minimum <= value <= maximum:
        raise ConfigurationError(f"{what} must be between {minimum:g} and {maximum:g}, got {value!r}")
    return float(value)
