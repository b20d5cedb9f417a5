"""aiojobs_engine: an asyncio-native background job engine backed by SQLite or PostgreSQL.

    import asyncio

    from aiojobs_engine import Engine

    engine = Engine("sqlite:///jobs.db")

    @engine.job(queue="email", max_attempts=5, timeout=30)
    async def send_welcome(user_id: int) -> None: ...

    async def main() -> None:
        async with engine:
            await send_welcome.enqueue(42)
            await engine.workoff()

    asyncio.run(main())
"""

from ._clock import Clock, FrozenClock, SystemClock
from ._context import JobContext, current_job
from ._control import Cancel, Complete, Delete, Fail, JobSignal, Retry, Snooze
from ._engine import Engine
from ._errors import (
    AiojobsError,
    ArgumentsError,
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    DuplicateJobError,
    EngineIdInUseError,
    EngineStateError,
    JobNotFoundError,
    JobStateError,
    JobTimeoutError,
    MissingExtraError,
    QueueNotEmptyError,
    SchemaError,
    SerializationError,
    UniqueConflictError,
    UnknownJobError,
    WorkerCrashedError,
)
from ._events import EventKind, JobEvent
from ._groups import WorkerGroup
from ._handles import ClassJobHandle, Job, JobHandle, JobRequest, NamedEnqueuer
from ._options import QueueConfig, RetentionDict, UniqueConfig
from ._records import CronRecord, EngineRecord, JobErrorInfo, JobRecord, JobState, QueueRecord
from ._retry import ConstantBackoff, ExponentialBackoff, LinearBackoff, PolynomialBackoff
from ._settings import EngineSettings

__version__ = "0.2.0"

__all__ = [
    "AiojobsError",
    "ArgumentsError",
    "BackendError",
    "BackendUnavailableError",
    "Cancel",
    "ClassJobHandle",
    "Clock",
    "Complete",
    "ConfigurationError",
    "ConstantBackoff",
    "CronRecord",
    "Delete",
    "DuplicateJobError",
    "Engine",
    "EngineIdInUseError",
    "EngineRecord",
    "EngineSettings",
    "EngineStateError",
    "EventKind",
    "ExponentialBackoff",
    "Fail",
    "FrozenClock",
    "Job",
    "JobContext",
    "JobErrorInfo",
    "JobEvent",
    "JobHandle",
    "JobNotFoundError",
    "JobRecord",
    "JobRequest",
    "JobSignal",
    "JobState",
    "JobStateError",
    "JobTimeoutError",
    "LinearBackoff",
    "MissingExtraError",
    "NamedEnqueuer",
    "PolynomialBackoff",
    "QueueConfig",
    "QueueNotEmptyError",
    "QueueRecord",
    "RetentionDict",
    "Retry",
    "SchemaError",
    "SerializationError",
    "Snooze",
    "SystemClock",
    "UniqueConfig",
    "UniqueConflictError",
    "UnknownJobError",
    "WorkerCrashedError",
    "WorkerGroup",
    "__version__",
    "current_job",
]
