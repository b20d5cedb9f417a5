"""How results are printed: aligned tables for people, JSON for programs.

Times print in UTC, ISO style, to the second in tables (``2025-01-31T09:15:02Z``) and in
full in JSON (``datetime.isoformat()``). JSON gives every public field of a record; the
claim token (internal fencing) is never printed.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from .. import CronRecord, JobRecord, QueueRecord
from .._records import INTERNAL_JOB_FIELDS


def emit(text: str) -> None:
    """One block of output on stdout (looked up at call time, so tests can capture it)."""
    print(text, file=sys.stdout)


def emit_json(value: object) -> None:
    emit(json.dumps(value, indent=2, ensure_ascii=False, default=_json_default))


def record_dict(record: JobRecord | QueueRecord | CronRecord) -> dict[str, Any]:
    """Every public field of a record, in declaration order (times stay datetimes until dumped)."""
    return {
        f.name: getattr(record, f.name) for f in dataclasses.fields(record) if f.name not in INTERNAL_JOB_FIELDS
    }


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    raise TypeError(f"cannot print {type(value).__name__} as JSON")


def short_time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def json_text(value: object) -> str:
    """A stored JSON value (arguments, result, meta) on one line."""
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, right: Sequence[str] = ()) -> str:
    """Columns padded to their widest cell, two spaces apart; ``right`` names right-aligned columns."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    aligned_right = [h in right for h in headers]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, aligned_right, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), *(line(row) for row in cells)])


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return short_time(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return " ".join(str(value).split())
