"""``aiojobs worker --group G --id N``: one worker process, for a process monitor or the supervisor.

Its engine runs with the group's settings under the worker id ``<host>:<G>:<N>``, the same
for every restart, so a restarted worker takes back what its previous life left behind at
once. Signals: SIGINT/SIGTERM stop it gracefully; a second one, half a second or more
after the first, stops it at once (a second copy of the same signal arriving together —
systemd's default KillMode signals every process of the unit while the supervisor forwards
its own — is one request). Under a supervisor (``--supervisor-pid``) it stops gracefully by
itself when the supervisor dies: Linux sends it SIGTERM then (PR_SET_PDEATHSIG), and a
watchdog compares ``getppid()`` with the supervisor's pid everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from argparse import Namespace
from collections.abc import Iterator
from dataclasses import replace
from typing import Final

from .. import ConfigurationError, Engine, QueueConfig
from .._groups import IMPLICIT_GROUP, WorkerGroup, find_group, worker_id
from .._log import Event
from ._banner import announce_when_started
from ._errors import EXIT_OK, CommandFailed, UsageError
from ._plan import resolve_groups
from ._process import die_with_parent, notify_systemd
from ._work import configure_logging, configure_queues

logger: Final = logging.getLogger("aiojobs_engine.worker")

WATCH_EVERY: Final = 0.25  # seconds between checks of the parent and the engine
SECOND_SIGNAL_AFTER: Final = 0.5


def prepare_worker(engine: Engine, args: Namespace) -> None:
    """Before the loop starts: guard against an orphaned start, configure the group's engine."""
    if args.supervisor_pid is not None:
        die_with_parent(signal.SIGTERM)
        if os.getppid() != args.supervisor_pid:  # it died before the guard was set
            raise CommandFailed(f"the supervisor (pid {args.supervisor_pid}) is gone; not starting")
    groups = resolve_groups(engine, args.config_file)
    if groups:
        if args.queues is not None or args.concurrency is not None:
            raise UsageError("--queues and --concurrency are for the implicit group; worker groups are declared, "
                             "so the group's own queues apply")
        try:
            group = find_group(groups, args.group)
        except ConfigurationError as exc:
            raise UsageError(str(exc)) from None
    elif args.group != IMPLICIT_GROUP:
        raise UsageError(f"no worker group is declared (Engine(groups=...) or --config); --group {args.group} "
                         f"names none (the implicit group is {IMPLICIT_GROUP!r})")
    else:
        group = WorkerGroup(IMPLICIT_GROUP)
        configure_queues(engine, args)
    wid = worker_id(socket.gethostname(), group.name, args.id)
    group.engine_settings(engine.settings, wid)  # the group's settings fit the engine's (message names the group)
    engine.configure(queues=_group_queues(engine, group), worker_id=wid, **group.settings)
    args.worker_id = wid


def _group_queues(engine: Engine, group: WorkerGroup) -> dict[str, QueueConfig] | None:
    if group.queues is None:
        return None  # keep the engine's own
    own = engine.queues or {}
    configs = {}
    for name in group.queues:
        base = own.get(name, QueueConfig())
        configs[name] = base if group.concurrency is None else replace(base, concurrency=group.concurrency)
    return configs


async def worker(engine: Engine, args: Namespace) -> int:
    configure_logging(args)
    stopper = _Stopper(engine, args.supervisor_pid)
    announce_when_started(engine)
    with stopper.handling_signals():
        async with engine.running():
            _announce_ready(args.ready_fd)
            await stopper.wait()
            notify_systemd("STOPPING=1")
    return EXIT_OK


def _announce_ready(fd: int | None) -> None:
    notify_systemd("READY=1")
    if fd is None:
        return
    with contextlib.suppress(OSError):
        os.write(fd, b"ready\n")
    with contextlib.suppress(OSError):
        os.close(fd)


class _Stopper:
    def __init__(self, engine: Engine, parent: int | None) -> None:
        self._engine = engine
        self._parent = parent
        self._stop = asyncio.Event()
        self._first_at: float | None = None
        self._immediate = False
        self._tasks: set[asyncio.Task[None]] = set()

    @contextlib.contextmanager
    def handling_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        handled = (signal.SIGINT, signal.SIGTERM)
        for sig in handled:
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            yield
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

    def _on_signal(self, signum: int) -> None:
        now = time.monotonic()
        if self._first_at is None:
            if self._orphaned():  # PR_SET_PDEATHSIG's SIGTERM
                return
            self._first_at = now
            logger.warning("received %s: stopping gracefully (send it again to stop at once)",
                           signal.Signals(signum).name, extra={"event": Event.ENGINE_STOPPING, "signal": signum})
            self._stop.set()
        elif now - self._first_at >= SECOND_SIGNAL_AFTER and not self._immediate:
            logger.warning("received %s again: stopping at once, handing running jobs back",
                           signal.Signals(signum).name, extra={"event": Event.ENGINE_STOPPING, "signal": signum})
            self._immediate = True
            self._stop.set()
            task = asyncio.ensure_future(self._engine.stop(immediate=True))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _orphaned(self) -> bool:
        """Is the supervisor gone? Then stop gracefully, as after a first signal (logged once)."""
        if self._parent is None or os.getppid() == self._parent:
            return False
        if self._first_at is None:
            self._first_at = time.monotonic()
            logger.warning("the supervisor (pid %d) is gone; stopping gracefully", self._parent,
                           extra={"event": Event.WORKER_ORPHANED, "supervisor_pid": self._parent})
        self._stop.set()
        return True

    async def wait(self) -> None:
        """Until a signal, the supervisor's death, or the engine's own end."""
        if self._immediate:  # asked while the engine was starting
            await self._engine.stop(immediate=True)
        while not self._stop.is_set():
            if not self._engine.is_running:
                return  # it stopped (a job called stop(), or it crashed): running() reports which
            if self._orphaned():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), WATCH_EVERY)
