"""Every error aiojobs_engine raises, in one tree.

    AiojobsError                      base of every error of the package
    ├── ConfigurationError            (ValueError) bad option, setting, queue or job name
    │   └── DuplicateJobError         two jobs declared under one name
    ├── SerializationError            (TypeError) a value that is not JSON
    ├── ArgumentsError                (TypeError) arguments that do not bind to the job
    ├── UnknownJobError               (LookupError) no job of that name is declared here
    ├── JobNotFoundError              (LookupError) no job with that id is stored
    ├── JobStateError                 (RuntimeError) the job's state does not allow the action
    │   └── UniqueConflictError       another job holds the unique key the job would take
    ├── JobTimeoutError               (TimeoutError) an attempt ran past its timeout
    ├── WorkerCrashedError            the worker process running an attempt died
    ├── EngineStateError              (RuntimeError) the call does not fit the engine's state
    │   └── EngineIdInUseError        another live engine heartbeats under this worker id
    ├── QueueNotEmptyError            (RuntimeError) jobs are stored in the queue to delete
    ├── SchemaError                   (RuntimeError) the database schema does not fit
    ├── MissingExtraError             (ModuleNotFoundError) an integration's extra is not installed
    └── BackendError                  the database failed; the driver's error is __cause__
        └── BackendUnavailableError   the database cannot be reached right now

The control-flow signals a job raises to end an attempt on purpose (``Complete``,
``Retry``, ``Snooze``, …) are not errors and live apart, in ``_control``.
"""

from __future__ import annotations


class AiojobsError(Exception):
    """Base class of every error raised by aiojobs_engine."""


class ConfigurationError(AiojobsError, ValueError):
    """An option, setting, queue name or job name is invalid; the message says what to change."""


class DuplicateJobError(ConfigurationError):
    """Two jobs were declared under one name on the same engine."""


class SerializationError(AiojobsError, TypeError):
    """A value that must be stored as JSON is not JSON-serialisable."""


class ArgumentsError(AiojobsError, TypeError):
    """Arguments given to ``enqueue`` do not bind to the job's signature."""


class UnknownJobError(AiojobsError, LookupError):
    """No job of that name is declared on this engine."""


class JobNotFoundError(AiojobsError, LookupError):
    """No job with that id is stored (never was, or it was deleted)."""


class JobStateError(AiojobsError, RuntimeError):
    """The job's state does not allow the action (snoozing a running or finished job, …)."""


class UniqueConflictError(JobStateError):
    """The action would give the job its unique key back while another job holds it.

    Raised by ``retry_job`` for a finished unique job whose key a newer job took meanwhile.
    ``job_id`` is the job acted on, ``unique_key`` the key, ``holder_id`` the job holding it
    (None if it finished before it could be read).
    """

    def __init__(self, message: str, *, job_id: int, unique_key: str | None, holder_id: int | None) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.unique_key = unique_key
        self.holder_id = holder_id


class JobTimeoutError(AiojobsError, TimeoutError):
    """An attempt ran past its timeout; recorded as the attempt's error."""


class WorkerCrashedError(AiojobsError):
    """The worker process running a CPU-bound attempt died (exit, signal, or killed)."""


class EngineStateError(AiojobsError, RuntimeError):
    """The call does not fit the engine's state (closed, already running, …)."""


class EngineIdInUseError(EngineStateError):
    """Another engine with a fresh heartbeat already works under this worker id."""


class QueueNotEmptyError(AiojobsError, RuntimeError):
    """``delete_queue`` refused: jobs of the queue are stored. ``counts`` maps each state
    that has jobs to their number."""

    def __init__(self, message: str, *, queue: str, counts: dict[str, int]) -> None:
        super().__init__(message)
        self.queue = queue
        self.counts = counts


class SchemaError(AiojobsError, RuntimeError):
    """The database schema is missing, behind (and auto-migration is off) or newer than known."""


class MissingExtraError(AiojobsError, ModuleNotFoundError):
    """An optional module (``contrib.prometheus``, the dashboard, …) was imported without the
    library its extra installs; the message names the ``pip install`` to run.

    ``name`` is the module that could not be imported (as on any ``ImportError``, so tools
    that read it keep working) and ``extra`` the aiojobs_engine extra that installs it.
    """

    def __init__(self, message: str, *, name: str | None, extra: str) -> None:
        super().__init__(message, name=name)
        self.extra = extra


class BackendError(AiojobsError):
    """The database failed; the driver's exception is chained as ``__cause__``."""


class BackendUnavailableError(BackendError):
    """The database cannot be reached right now (connection refused, lost, or locked too long)."""
