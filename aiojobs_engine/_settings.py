"""Engine settings: one frozen, validated value; changed only while the engine is closed."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, TypedDict

from ._errors import ConfigurationError
from ._validation import check_bool, check_int, check_name, seconds_from

_DAY = 86_400.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Retention:
    """Seconds after which finished jobs may be deleted; ``None`` keeps them for ever."""

    completed: float | None
    failed: float | None
    canceled: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineSettings:
    """Every tunable of an engine, in seconds where it is a duration.

    Recovery bound: a job whose engine died is back in ``waiting`` within
    ``stale_after + heartbeat_interval + reaper_interval`` (about 19 s by default).
    """

    poll_interval: float = 1.0
    heartbeat_interval: float = 2.0
    stale_after: float = 15.0
    shutdown_grace: float = 8.0
    reaper_interval: float = 2.0
    claim_batch_size: int = 100
    cpu_workers: int | None = None  # None: one supervised process per core
    thread_workers: int = 16
    blocked_loop_limit: float = 300.0
    loop_lag_warning: float = 1.0
    auto_migrate: bool = True
    worker_id: str | None = None
    completed_retention: float | None = 7 * _DAY
    canceled_retention: float | None = 7 * _DAY
    failed_retention: float | None = None
    prune_batch_size: int = 1000
    max_arguments_bytes: int | None = 1 << 20  # a job's encoded args, kwargs, constructor args and meta

    def __post_init__(self) -> None:
        # Durations may be given as timedeltas; they are stored as float seconds.
        for name in ("poll_interval", "heartbeat_interval", "stale_after", "reaper_interval",
                     "blocked_loop_limit", "loop_lag_warning"):
            self._set_seconds(name, seconds_from(getattr(self, name), name, allow_zero=False))
        self._set_seconds("shutdown_grace", seconds_from(self.shutdown_grace, "shutdown_grace"))
        for name in ("completed_retention", "canceled_retention", "failed_retention"):
            value = getattr(self, name)
            if value is not None:
                self._set_seconds(name, seconds_from(value, f"{name} (seconds, or None to keep for ever)"))
        if self.stale_after < 3 * self.heartbeat_interval:
            raise ConfigurationError(
                f"stale_after must be at least 3 x heartbeat_interval "
                f"({3 * self.heartbeat_interval:g}s), got {self.stale_after:g}s; raise stale_after "
                f"or lower heartbeat_interval"
            )
        check_int(self.claim_batch_size, "claim_batch_size", minimum=1, maximum=10_000)
        check_int(self.thread_workers, "thread_workers", minimum=1, maximum=1024)
        check_int(self.prune_batch_size, "prune_batch_size", minimum=1, maximum=100_000)
        if self.max_arguments_bytes is not None:
            check_int(self.max_arguments_bytes, "max_arguments_bytes (or None for no limit)", minimum=1)
        if self.cpu_workers is not None:
            check_int(self.cpu_workers, "cpu_workers", minimum=1, maximum=1024)
        check_bool(self.auto_migrate, "auto_migrate")
        if self.worker_id is not None:
            check_name(self.worker_id, "worker_id")

    def _set_seconds(self, name: str, seconds: float) -> None:
        object.__setattr__(self, name, seconds)  # frozen: only while being built

    @property
    def cpu_worker_count(self) -> int:
        return self.cpu_workers or os.cpu_count() or 1

    @property
    def retention(self) -> Retention:
        return Retention(completed=self.completed_retention, failed=self.failed_retention,
                         canceled=self.canceled_retention)

    @property
    def recovery_bound(self) -> float:
        return self.stale_after + self.heartbeat_interval + self.reaper_interval

    def updated(self, changes: Mapping[str, Any]) -> EngineSettings:
        """A copy with ``changes`` applied; unknown names raise ConfigurationError."""
        unknown = sorted(set(changes) - SETTING_NAMES)
        if unknown:
            raise ConfigurationError(
                f"unknown engine setting(s) {', '.join(map(repr, unknown))}; "
                f"accepted: url, queues, {', '.join(sorted(SETTING_NAMES))}"
            )
        return replace(self, **changes)


SETTING_NAMES = frozenset(f.name for f in fields(EngineSettings))


class SettingsDict(TypedDict, total=False):
    """The engine settings as keyword arguments (for ``Engine(...)`` and ``configure(...)``)."""

    poll_interval: float
    heartbeat_interval: float
    stale_after: float
    shutdown_grace: float
    reaper_interval: float
    claim_batch_size: int
    cpu_workers: int | None
    thread_workers: int
    blocked_loop_limit: float
    loop_lag_warning: float
    auto_migrate: bool
    worker_id: str | None
    completed_retention: float | None
    canceled_retention: float | None
    failed_retention: float | None
    prune_batch_size: int
    max_arguments_bytes: int | None
