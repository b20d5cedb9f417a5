"""The small bundle every runtime component receives: no globals, time injected."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .._backends._protocol import Backend, EngineRegistration
from .._clock import Clock
from .._definitions import Registry
from .._events import EventBus
from .._hooks import Hooks
from .._records import JobRecord
from .._settings import EngineSettings


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    backend: Backend
    clock: Clock
    settings: EngineSettings
    registry: Registry
    hooks: Hooks  # engine-wide; each job's own run after these
    registration: EngineRegistration
    events: EventBus = field(default_factory=EventBus)
    context_hooks: tuple[Callable[[JobRecord], object], ...] = ()  # run in each body's context

    @property
    def engine_id(self) -> str:
        return self.registration.id
