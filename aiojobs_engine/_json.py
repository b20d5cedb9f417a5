"""JSON in and out of storage: the only encoding job data ever gets (never pickle, never eval)."""

from __future__ import annotations

import json
import re
from typing import Any

from ._errors import SerializationError

# What a JSON document can hold, as Python values.
JSONValue = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def dumps(value: object, what: str) -> str:
    """Encode ``value`` as compact JSON or raise SerializationError naming ``what``.

    Refused, so that both backends store exactly the same values: NaN and infinities (not
    JSON) and the NUL character in strings (PostgreSQL's jsonb cannot hold it).
    """
    try:
        text = _encoder.encode(value)
        text.encode("utf-8")  # lone surrogates (say, from os.fsdecode) cannot be stored
    except UnicodeEncodeError:
        raise SerializationError(f"{what} must not contain lone surrogate characters in its strings") from None
    except (TypeError, ValueError, RecursionError) as exc:
        raise SerializationError(
            f"{what} must be JSON-serialisable (dict, list, str, int, float, bool, None): {exc}"
        ) from None
    if "\\u0000" in text and _NUL.search(text):
        raise SerializationError(f"{what} must not contain the NUL character (\\x00) in its strings")
    return text


def text_for_storage(text: str) -> str:
    """Text from an exception (a message, a traceback), made storable: NUL becomes ``\\x00``
    and a lone surrogate its ``\\udcxx`` escape."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


# \u0000 preceded by an even number of backslashes is an escaped NUL, not a literal "\u0000".
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def loads(text: str | bytes | None) -> Any:
    """Decode JSON text from storage; ``None`` stays ``None``."""
    if text is None:
        return None
    return json.loads(text)
