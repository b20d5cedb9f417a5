"""``aiojobs work`` and ``aiojobs workoff``: run the application's jobs.

``work`` runs until SIGINT/SIGTERM (a second signal stops at once, handing running jobs
back), which is what a container's PID 1 receives: in this process, or — with
``--processes N``, ``--group``, ``--pidfile``, or worker groups declared — as the supervisor
of worker processes (``_supervisor``). ``workoff`` runs what is due now, with a progress
bar on stderr fed by polling the number of due jobs, and prints how many attempts ran. An
engine in this process runs on uvloop where it is installed; the supervisor on asyncio's
own loop (it reaps its children itself, on SIGCHLD).

In this process both stop on signals the same way (``_signals``): the first SIGINT/SIGTERM
stops claiming and lets running jobs finish within ``shutdown_grace``, a second hands them
back to ``waiting`` at once (attempt not charged); either way the command then exits 0,
``workoff`` after printing the attempts it ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from argparse import Namespace
from typing import Final

from .. import AiojobsError, Engine, QueueConfig
from .._console import CONSOLE_FORMAT, ContextFormatter
from .._validation import check_name
from ._banner import announce_when_started
from ._errors import EXIT_OK, UsageError
from ._known import require_known_before_opening
from ._output import emit, emit_json
from ._pidfile import PidFile, absolute
from ._plan import plan, resolve_groups, wants_supervisor
from ._progress import ProgressBar
from ._supervisor import Supervisor

PROGRESS_POLL: Final = 0.2
LOG_FORMAT: Final = CONSOLE_FORMAT


def configure_queues(engine: Engine, args: Namespace) -> None:
    """Apply ``--queues`` and ``--concurrency`` to the engine (before the event loop starts)."""
    names = queue_names(args)
    if names is None:
        if args.concurrency is not None:
            raise UsageError("--concurrency is set per queue: name the queues with --queues")
        return
    configs = {name: QueueConfig(concurrency=args.concurrency) for name in names}  # bad values fail before I/O
    require_known_before_opening(engine, names, create=args.create)
    engine.configure(queues=configs)


def queue_names(args: Namespace) -> list[str] | None:
    """The names given to ``--queues`` (None: not given), each a valid queue name."""
    if args.queues is None:
        return None
    names = [check_name(name.strip(), "queue") for name in args.queues.split(",") if name.strip()]
    if not names:
        raise UsageError(f"--queues needs at least one queue name, got {args.queues!r}")
    return names


def prepare_work(engine: Engine, args: Namespace) -> None:
    """``work`` and ``start``: in this process, or the plan of a supervisor (checked now)."""
    groups = resolve_groups(engine, args.config_file)
    if wants_supervisor(args, groups):
        if not hasattr(signal, "SIGCHLD"):
            raise UsageError("the supervisor (--processes, --group, worker groups) needs a POSIX system; here, "
                             "run one `aiojobs worker --group G --id N` per process under a service manager")
        args.slots = plan(engine, args, groups)
        args.uvloop = False
        names = queue_names(args)
        if names is not None:  # the implicit group's workers get --create: checked once, here
            require_known_before_opening(engine, names, create=args.create)
    else:
        args.slots = None
        configure_queues(engine, args)


def configure_logging(args: Namespace) -> None:
    """The root logger to stderr, each line with its job's context (``[event=job.failed
    job_id=7 job=send queue=email attempt=2]``), as an embedded engine's console has it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ContextFormatter(LOG_FORMAT))
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])


async def work(engine: Engine, args: Namespace) -> int:
    configure_logging(args)
    if args.slots is not None:
        return await _supervise(args)
    announce_when_started(engine)
    await engine.run(handle_signals=True)
    return EXIT_OK


async def _supervise(args: Namespace) -> int:
    pidfile = None
    if args.pidfile is not None:
        pidfile = PidFile(absolute(args.pidfile))
        pidfile.acquire()
    supervisor = Supervisor(args.slots, max_restarts=args.max_restarts, pidfile=pidfile, ready_fd=args.ready_fd)
    return await supervisor.run()


async def workoff(engine: Engine, args: Namespace) -> int:
    configure_logging(args)
    configured = engine.queues
    queues = None if configured is None else set(configured)
    bar = ProgressBar(sys.stderr)
    async with engine:
        running = asyncio.create_task(engine.workoff(handle_signals=True), name="aiojobs-cli-workoff")
        try:
            while not running.done():
                remaining = await _due(engine, queues)
                if remaining is not None:
                    bar.update(remaining)
                await asyncio.wait({running}, timeout=PROGRESS_POLL)
            attempts = await running
        finally:
            if not running.done():
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
    bar.finish()
    if args.json:
        emit_json({"attempts": attempts})
    else:
        emit(f"ran {attempts} attempt{'' if attempts == 1 else 's'}")
    return EXIT_OK


async def _due(engine: Engine, queues: set[str] | None) -> int | None:
    """Jobs due now in the queues this workoff works (not paused); None if it cannot tell."""
    try:
        paused = {q.name for q in await engine.list_queues() if q.paused}
        counts = await engine.count_jobs(due_only=True)
    except AiojobsError:
        return None  # a busy database only costs a frame of the bar; workoff reports real errors
    return sum(n for (queue, _), n in counts.items() if queue not in paused and (queues is None or queue in queues))
