"""Acting on the jobs ticked in a list: retry, cancel or delete each, and say what became of each.

One action on many jobs is a loop over the public ``Engine`` calls a single job's button
makes, so each job gets exactly the rules it would get alone (a unique key held elsewhere, a
running job stopped by its engine, a held job not deleted). Every id ends in one outcome;
none of them is an error. The outcomes travel in the redirect's query (``retried=3:12,13,14``:
a count, then the first ids) and come back as notices with fixed texts, so a link cannot
make the page say anything else, and a reload repeats nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from .. import Engine, JobState, UniqueConflictError
from ._format import Notice

MAX_SELECTED: Final = 500  # a page of jobs holds at most this many (the jobs page's largest limit)
SHOWN_IDS: Final = 20  # ids named per outcome in a notice; the count says how many more

ACTIONS: Final = ("retry", "cancel", "delete")

# Per action: each outcome's key in the query, in the order notices show them, with its
# notice kind and text ({ids}: the jobs it names).
_OUTCOMES: Final[dict[str, tuple[tuple[str, str, str], ...]]] = {
    "retry": (
        ("retried", "ok", "Will run again now: {ids}."),
        ("unfinished", "warn", "Not retried, as they have not finished: {ids}."),
        ("conflict", "warn", "Not retried, as another job holds their unique key: {ids}."),
        ("missing", "warn", "No such job (deleted or pruned): {ids}."),
    ),
    "cancel": (
        ("canceled", "ok", "Canceled: {ids}."),
        ("stopping", "ok", "Running: their engines were asked to stop them: {ids}."),
        ("finished", "warn", "Not canceled, as they had already finished: {ids}."),
        ("missing", "warn", "No such job (deleted or pruned): {ids}."),
    ),
    "delete": (
        ("deleted", "ok", "Deleted: {ids}."),
        ("held", "warn", "Not deleted, as an engine holds them (cancel them first): {ids}."),
        ("missing", "warn", "No such job (deleted or pruned): {ids}."),
    ),
}

QUERY_KEYS: Final = frozenset({"action"} | {key for outcomes in _OUTCOMES.values() for key, _, _ in outcomes})


@dataclass(slots=True)
class Outcome:
    """What became of each selected job, by outcome key."""

    action: str
    ids: dict[str, list[int]] = field(default_factory=dict)

    def add(self, key: str, job_id: int) -> None:
        self.ids.setdefault(key, []).append(job_id)

    def query(self) -> dict[str, str]:
        """The redirect's query: ``action``, then ``key=count:id,id,...`` per outcome."""
        fields = {"action": self.action}
        for key, ids in self.ids.items():
            fields[key] = f"{len(ids)}:" + ",".join(str(i) for i in ids[:SHOWN_IDS])
        return fields


async def apply(engine: Engine, action: str, ids: Sequence[int]) -> Outcome:
    """Do ``action`` to each job of ``ids`` in turn, through the public Engine API."""
    outcome = Outcome(action)
    for job_id in ids:
        outcome.add(await _ONE[action](engine, job_id), job_id)
    return outcome


async def _retry(engine: Engine, job_id: int) -> str:
    before = await engine.get_job(job_id)
    if before is None:
        return "missing"
    if not before.is_terminal:
        return "unfinished"  # retry_job would leave it as it is: say so rather than "retried"
    try:
        record = await engine.retry_job(job_id)
    except UniqueConflictError:
        return "conflict"
    if record is None:
        return "missing"  # deleted meanwhile
    return "retried" if record.state is JobState.WAITING else "unfinished"


async def _cancel(engine: Engine, job_id: int) -> str:
    before = await engine.get_job(job_id)
    if before is None:
        return "missing"
    if before.is_terminal:
        return "finished"
    record = await engine.cancel(job_id)
    if record is None:
        return "missing"  # deleted meanwhile
    if record.state is JobState.CANCELED:
        return "canceled"
    return "stopping" if record.cancel_requested else "finished"


async def _delete(engine: Engine, job_id: int) -> str:
    if await engine.delete_job(job_id):
        return "deleted"
    return "missing" if await engine.get_job(job_id) is None else "held"


_ONE: Final = {"retry": _retry, "cancel": _cancel, "delete": _delete}


def notices(query: Mapping[str, str]) -> list[Notice]:
    """The notices an outcome's query asks for; values that are not ``count:ids`` are left out."""
    action = query.get("action", "")
    found: list[Notice] = []
    for key, kind, text in _OUTCOMES.get(action, ()):
        parsed = _parse(query.get(key))
        if parsed is not None:
            count, ids = parsed
            found.append(Notice(kind, text.format(ids=_name_ids(count, ids))))
    return found


def _parse(value: str | None) -> tuple[int, list[int]] | None:
    if not value or len(value) > 32 * (SHOWN_IDS + 1):
        return None
    count, _, listed = value.partition(":")
    parts = listed.split(",") if listed else []
    if not _digits(count) or not all(_digits(p) for p in parts) or len(parts) > SHOWN_IDS:
        return None
    return int(count), [int(p) for p in parts]


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) < 20


def _name_ids(count: int, ids: list[int]) -> str:
    """``job 12``, ``3 jobs: 12, 13, 14`` or ``120 jobs: 12, 13, … and 100 more``."""
    if count == 1 and ids:
        return f"job {ids[0]}"
    listed = ", ".join(str(i) for i in ids)
    more = count - len(ids)
    return f"{count} jobs: {listed}" + (f" and {more} more" if more > 0 else "")
