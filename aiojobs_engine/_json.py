"""JSON in and out of storage: the only encoding job data ever gets (never pickle, never eval)."""

from __future__ import annotations

import json
from typing import Any

from ._errors import SerializationError

# What a JSON document can hold, as Python values.
JSONValue = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def dumps(value: object, what: str) -> str:
    """Encode ``value`` as compact JSON or raise SerializationError naming ``what``.

    NaN and infinities are refused: they are not JSON, and PostgreSQL's jsonb rejects them.
    """
    try:
        return _encoder.encode(value)
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"{what} must be JSON-serialisable (dict, list, str, int, float, bool, None): {exc}"
        ) from None


def loads(text: str | bytes | None) -> Any:
    """Decode JSON text from storage; ``None`` stays ``None``."""
    if text is None:
        return None
    return json.loads(text)
