"""Worker groups: named sets of identical worker processes, as RedwoodJS's ``workers: [...]``.

A ``WorkerGroup`` says which queues its processes work, how many processes run it (default:
one per core this process may use), and the settings those processes' engines run with
(concurrency per queue, poll interval, retention, any engine setting), plus the
``max_attempts`` default of jobs enqueued to its queues. This module is pure: values and
validation only; the supervisor that starts the processes lives in the CLI.

Invariants: a group's name is short and has no ``:`` (worker ids are
``<host>:<group>:<index>``); within one engine, group names are unique, and two groups
that share a queue do not disagree on its stored concurrency or its ``max_attempts``
default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Unpack

from ._errors import ConfigurationError
from ._options import MAX_ATTEMPTS_LIMIT
from ._settings import SETTING_NAMES, EngineSettings, SettingsDict
from ._validation import check_int, check_name

MAX_PROCESSES: Final = 1024
MAX_INDEX: Final = 99_999
IMPLICIT_GROUP: Final = "default"  # the group `aiojobs work --processes N` runs when none is declared

_GROUP_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,39}")
_HOST_BAD = re.compile(r"[^A-Za-z0-9_.\-]")


@dataclass(frozen=True, init=False)
class WorkerGroup:
    """A named set of identical worker processes.

    ``WorkerGroup("mail", queues=["email"], processes=2, concurrency=5, max_attempts=3,
    poll_interval=0.5, completed_retention=3600)``:

    - ``queues``: the queues its processes work; ``None`` (the default): the queues the
      engine itself works (every queue unless ``Engine(queues=...)`` says otherwise);
    - ``processes``: how many processes run it; ``None``: one per core (``cpu_count``);
    - ``concurrency``: jobs of each of its queues one process runs at once (stored for the
      queue, as ``QueueConfig(concurrency=...)``, so it needs ``queues``);
    - ``max_attempts``: the default ``max_attempts`` of jobs enqueued to its queues when
      neither the job's declaration nor the enqueue call sets one;
    - any other keyword is an engine setting for its processes (``poll_interval``,
      ``shutdown_grace``, ``completed_retention``, ...), except ``worker_id``, which each
      process derives as ``<host>:<group>:<index>``.
    """

    name: str
    queues: tuple[str, ...] | None
    processes: int | None
    concurrency: int | None
    max_attempts: int | None
    settings: Mapping[str, Any]

    def __init__(self, name: str, *, queues: Sequence[str] | None = None, processes: int | None = None,
                 concurrency: int | None = None, max_attempts: int | None = None,
                 **settings: Unpack[SettingsDict]) -> None:
        name = check_group_name(name)
        try:
            checked_queues = _check_queues(queues)
            if processes is not None:
                check_int(processes, "processes", minimum=1, maximum=MAX_PROCESSES)
            if concurrency is not None:
                check_int(concurrency, "concurrency", minimum=1, maximum=100_000)
                if checked_queues is None:
                    raise ConfigurationError("concurrency is set per queue: name the queues (queues=[...])")
            if max_attempts is not None:
                check_int(max_attempts, "max_attempts", minimum=1, maximum=MAX_ATTEMPTS_LIMIT)
            checked_settings = _check_settings(settings)
        except ConfigurationError as exc:
            raise ConfigurationError(f"worker group {name!r}: {exc}") from None
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "queues", checked_queues)
        object.__setattr__(self, "processes", processes)
        object.__setattr__(self, "concurrency", concurrency)
        object.__setattr__(self, "max_attempts", max_attempts)
        object.__setattr__(self, "settings", MappingProxyType(checked_settings))

    def __hash__(self) -> int:
        return hash((self.name, self.queues, self.processes, self.concurrency, self.max_attempts))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WorkerGroup):
            return NotImplemented
        return (self.name, self.queues, self.processes, self.concurrency, self.max_attempts,
                dict(self.settings)) == (other.name, other.queues, other.processes, other.concurrency,
                                         other.max_attempts, dict(other.settings))

    def __repr__(self) -> str:
        parts = [repr(self.name)]
        for field in ("queues", "processes", "concurrency", "max_attempts"):
            value = getattr(self, field)
            if value is not None:
                parts.append(f"{field}={list(value) if field == 'queues' else value!r}")
        parts.extend(f"{key}={value!r}" for key, value in self.settings.items())
        return f"WorkerGroup({', '.join(parts)})"

    @property
    def process_count(self) -> int:
        """``processes``, or the number of cores this process may run on."""
        return self.processes or available_cores()

    def engine_settings(self, base: EngineSettings, worker_id: str) -> EngineSettings:
        """The settings of one of this group's processes: ``base`` with the group's on top."""
        try:
            return base.updated({**self.settings, "worker_id": worker_id})
        except ConfigurationError as exc:
            raise ConfigurationError(f"worker group {self.name!r}: {exc}") from None


def check_group_name(value: object) -> str:
    if not isinstance(value, str) or not _GROUP_NAME.fullmatch(value):
        raise ConfigurationError(
            "worker group name must be 1-40 letters, digits, '_', '.' or '-', not starting with a "
            f"punctuation mark; got {value!r}"
        )
    return value


def check_groups(groups: Iterable[object]) -> tuple[WorkerGroup, ...]:
    """Validate groups as one engine's set: unique names, no disagreement on a shared queue."""
    if isinstance(groups, str | bytes | WorkerGroup) or not isinstance(groups, Iterable):
        raise ConfigurationError(f"groups must be a list of WorkerGroup, got {groups!r}")
    result: list[WorkerGroup] = []
    for group in groups:
        if not isinstance(group, WorkerGroup):
            raise ConfigurationError(f"groups must be WorkerGroup values, got {group!r}")
        if any(g.name == group.name for g in result):
            raise ConfigurationError(f"two worker groups are named {group.name!r}; group names must be unique")
        for other in result:
            _check_compatible(other, group)
        result.append(group)
    return tuple(result)


def _check_compatible(a: WorkerGroup, b: WorkerGroup) -> None:
    shared = sorted(set(a.queues) & set(b.queues)) if a.queues is not None and b.queues is not None else []
    for queue in shared:
        if None not in (a.concurrency, b.concurrency) and a.concurrency != b.concurrency:
            raise ConfigurationError(
                f"worker groups {a.name!r} and {b.name!r} both work queue {queue!r} with different "
                f"concurrency ({a.concurrency} and {b.concurrency}); a queue's concurrency is stored once"
            )
    both_everything = a.queues is None and b.queues is None
    if (shared or both_everything) and None not in (a.max_attempts, b.max_attempts) \
            and a.max_attempts != b.max_attempts:
        where = f"queue {shared[0]!r}" if shared else "every queue"
        raise ConfigurationError(
            f"worker groups {a.name!r} and {b.name!r} both give {where} a max_attempts default, and "
            f"different ones ({a.max_attempts} and {b.max_attempts}); keep one"
        )


def max_attempts_default(groups: Sequence[WorkerGroup], queue: str) -> int | None:
    """The ``max_attempts`` default the groups give a job of ``queue``: a group naming the
    queue first, else a group working every queue; None when no group sets one."""
    for group in groups:
        if group.max_attempts is not None and group.queues is not None and queue in group.queues:
            return group.max_attempts
    for group in groups:
        if group.max_attempts is not None and group.queues is None:
            return group.max_attempts
    return None


def find_group(groups: Sequence[WorkerGroup], name: str) -> WorkerGroup:
    for group in groups:
        if group.name == name:
            return group
    declared = ", ".join(repr(g.name) for g in groups) or "none"
    raise ConfigurationError(f"no worker group named {name!r}; declared: {declared}")


def host_label(hostname: str) -> str:
    """A host name cut to fit a worker id: letters, digits, '_', '.', '-'; at most 60."""
    label = _HOST_BAD.sub("-", hostname).lstrip(".-")[:60]
    return label or "host"


def worker_id(host: str, group: str, index: int) -> str:
    """The stable id of worker ``index`` of ``group`` on ``host``: ``<host>:<group>:<index>``.

    It is the same for every restart of that worker, so a restarted worker takes back the
    jobs its previous life left behind at once, instead of waiting for them to be rescued.
    """
    check_int(index, "worker index (--id)", minimum=0, maximum=MAX_INDEX)
    return check_name(f"{host_label(host)}:{check_group_name(group)}:{index}", "worker id")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells), at least 1."""
    sched_getaffinity = getattr(os, "sched_getaffinity", None)
    if sched_getaffinity is not None:
        return max(1, len(sched_getaffinity(0)))
    return os.cpu_count() or 1


def _check_queues(queues: object) -> tuple[str, ...] | None:
    if queues is None:
        return None
    if isinstance(queues, str | bytes) or not isinstance(queues, Sequence):
        raise ConfigurationError(f"queues must be a list of queue names (or None for the engine's), got {queues!r}")
    names = tuple(check_name(q, "queue") for q in queues)
    if not names:
        raise ConfigurationError("queues must name at least one queue (or be None for the engine's)")
    if len(set(names)) != len(names):
        raise ConfigurationError(f"queues lists a queue twice: {list(names)!r}")
    return names


def _check_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    if "worker_id" in settings:
        raise ConfigurationError(
            "worker_id cannot be set for a group: each of its processes is <host>:<group>:<index>"
        )
    unknown = sorted(set(settings) - SETTING_NAMES)
    if unknown:
        accepted = ", ".join(sorted(SETTING_NAMES - {"worker_id"}))
        raise ConfigurationError(
            f"unknown setting(s) {', '.join(map(repr, unknown))}; accepted: queues, processes, concurrency, "
            f"max_attempts, {accepted}"
        )
    # Each value is checked now. How heartbeat_interval and stale_after fit together is
    # checked with the engine's own settings when a process starts: one given alone here
    # may fit the engine's other one.
    probe = dict(settings)
    probe.setdefault("stale_after", 1e9)
    probe.setdefault("heartbeat_interval", 1e-9)
    EngineSettings().updated(probe)
    return dict(settings)
