"""The supervisor of ``aiojobs work --processes N`` (and of worker groups, and ``aiojobs start``).

It runs a fixed set of worker slots, each one ``aiojobs worker --group G --id N`` process,
keeps each alive, and stops them all cleanly. Its protocol with a worker:

- a worker is *spawned* (``subprocess``, fork+exec at once: no interpreter with threads is
  ever forked) in a process group of its own, so a terminal's Ctrl-C reaches only the
  supervisor, which forwards it once;
- it gets ``--supervisor-pid`` and ``--ready-fd``: it writes ``ready`` on that pipe when its
  engine has started, and it stops gracefully by itself if the supervisor dies
  (``PR_SET_PDEATHSIG`` on Linux, a ``getppid()`` watchdog everywhere);
- SIGTERM asks it to stop gracefully; a second SIGTERM, at least half a second later, at once.

Signals to the supervisor: the first SIGINT/SIGTERM stops every worker gracefully and ends
restarts; the second stops them at once (a worker's second SIGTERM waits, if need be, until
0.6 s after its first, however soon the second signal came); a worker still alive
``shutdown_grace`` + 10 s after a graceful request is stopped at once, and one alive 15 s
after that is SIGKILLed.
SIGHUP replaces the workers one by one (new code, same worker ids); a replacement that does
not start ends the rolling restart, leaving the remaining workers on the old code.

A worker that exits unasked is restarted after 0.5 s, 1 s, 2 s, … (at most 30 s; a worker
that ran 30 s starts the count afresh); after ``max_restarts`` failed restarts in a row, or
at once when it exits with 2 (bad usage: a restart cannot help), it is given up and
reported; with every worker given up the supervisor exits 1. The supervisor reaps its
children itself, and as PID 1 of a container it reaps adopted orphans too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from .._log import Event
from ._errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from ._pidfile import PidFile
from ._process import notify_systemd, signal_name, start_time

logger: Final = logging.getLogger("aiojobs_engine.supervisor")

HEALTHY_AFTER: Final = 30.0  # a worker that ran this long starts its failure count afresh
BACKOFF_FIRST: Final = 0.5
BACKOFF_MAX: Final = 30.0
ESCALATE_AFTER: Final = 10.0  # beyond shutdown_grace, before a graceful stop turns immediate
KILL_AFTER: Final = 15.0  # after an immediate stop, before SIGKILL
SIGNAL_SPACING: Final = 0.6  # workers ignore a second signal closer than this to the first
REAP_EVERY: Final = 1.0  # SIGCHLD wakes the reaper at once; this is the safety net


@dataclass(frozen=True)
class SlotSpec:
    """One worker the supervisor keeps running."""

    group: str
    index: int
    worker_id: str
    argv: tuple[str, ...]
    grace: float  # the group's shutdown_grace


@dataclass
class Slot:
    spec: SlotSpec
    process: subprocess.Popen[bytes] | None = None
    started_at: datetime | None = None
    started_mono: float = 0.0
    ready: bool = False
    generation: int = 0
    state: str = "starting"
    failures: int = 0
    restarts: int = 0
    gave_up: bool = False
    exit_code: int | None = None
    signals_sent: int = 0
    first_signal_at: float = 0.0  # loop time of the first stop signal sent to this process
    replacing: bool = False
    exited: asyncio.Future[int] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    timers: list[asyncio.TimerHandle] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def public(self) -> dict[str, Any]:
        alive = self.process is not None and self.process.returncode is None
        return {
            "pid": self.pid if alive else None, "group": self.spec.group, "index": self.spec.index,
            "id": self.spec.worker_id, "started_at": _iso(self.started_at), "running": alive and self.ready,
            "state": self.state, "restarts": self.restarts, "generation": self.generation,
            "exit_code": self.exit_code,
        }


class Supervisor:
    def __init__(self, specs: Sequence[SlotSpec], *, max_restarts: int, pidfile: PidFile | None = None,
                 ready_fd: int | None = None) -> None:
        self._slots = [Slot(spec) for spec in specs]
        self._max_restarts = max_restarts
        self._pidfile = pidfile
        self._ready_fd = ready_fd
        self._env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}  # systemd talks to us only
        self._by_pid: dict[int, Slot] = {}
        self._keepers: set[asyncio.Task[None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop_requested = asyncio.Event()
        self._stop_signals = 0
        self._generation = 1
        self._restart: dict[str, Any] = {"generation": 1, "status": "done"}
        self._changed = asyncio.Event()
        self._started_at = datetime.now(UTC)
        self._state = "starting"

    # -- the run --------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._loop = loop
        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD)
        loop.add_signal_handler(signal.SIGINT, self._on_stop_signal, signal.SIGINT)
        loop.add_signal_handler(signal.SIGTERM, self._on_stop_signal, signal.SIGTERM)
        loop.add_signal_handler(signal.SIGHUP, self._on_hangup)
        loop.add_signal_handler(signal.SIGCHLD, self._reap)
        logger.info("supervisor %d starting %d worker(s)", os.getpid(), len(self._slots),
                    extra={"event": Event.SUPERVISOR_STARTED, "workers": len(self._slots)})
        try:
            self._spawn_task(self._reap_periodically())
            self._spawn_task(self._announce_ready())
            for slot in self._slots:
                self._keep(slot)
            while self._keepers:
                await asyncio.wait(set(self._keepers))
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)
            await self._last_resort()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._close_ready_fd("failed\n")
            if self._pidfile is not None:
                self._pidfile.release()
        gave_up = [s.spec.worker_id for s in self._slots if s.gave_up]
        logger.info("supervisor %d stopped%s", os.getpid(), f"; gave up on {', '.join(gave_up)}" if gave_up else "",
                    extra={"event": Event.SUPERVISOR_STOPPED, "gave_up": gave_up})
        return EXIT_FAILED if gave_up else EXIT_OK

    def _keep(self, slot: Slot) -> None:
        task = asyncio.ensure_future(self._keep_alive(slot))
        self._keepers.add(task)
        task.add_done_callback(self._keepers.discard)

    def _spawn_task(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

    async def _keep_alive(self, slot: Slot) -> None:
        """Run the slot's worker, again and again, until the supervisor stops or gives up on it."""
        while not self._stop_requested.is_set():
            code = await self._run_once(slot)
            ran = time.monotonic() - slot.started_mono
            if self._stop_requested.is_set():
                slot.state = "stopped"
                self._publish()
                return
            if slot.replacing:  # a rolling restart asked it to stop: its successor starts at once
                slot.replacing = False
                slot.failures = 0
                continue
            slot.failures = 1 if ran >= HEALTHY_AFTER else slot.failures + 1
            if code == EXIT_USAGE or slot.failures > self._max_restarts:
                self._give_up(slot, code)
                return
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (slot.failures - 1))
            logger.warning("worker %s (pid %s) exited unexpectedly (%s); restarting it in %gs",
                           slot.spec.worker_id, slot.pid, signal_name(code), delay,
                           extra={"event": Event.WORKER_EXITED, "worker_id": slot.spec.worker_id, "code": code})
            slot.state = "backoff"
            self._publish()
            slot.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(slot.wake.wait(), delay)
            slot.restarts += 1

    async def _run_once(self, slot: Slot) -> int:
        """Spawn the slot's worker and wait for it to exit; its exit status (as ``Popen``)."""
        read_fd, write_fd = os.pipe()
        argv = [*slot.spec.argv, "--supervisor-pid", str(os.getpid()), "--ready-fd", str(write_fd)]
        slot.ready, slot.signals_sent, slot.exit_code = False, 0, None
        slot.generation = self._generation
        slot.started_at, slot.started_mono = datetime.now(UTC), time.monotonic()
        try:
            process = _spawn(argv, write_fd, self._env)
        except OSError as exc:
            logger.error("could not start worker %s: %s", slot.spec.worker_id, exc,
                         extra={"event": Event.WORKER_EXITED, "worker_id": slot.spec.worker_id})
            os.close(read_fd)
            return 127
        finally:
            os.close(write_fd)
        slot.process = process
        slot.state = "starting"
        slot.exited = self._loop.create_future()
        self._by_pid[process.pid] = slot
        self._loop.add_reader(read_fd, self._on_ready_pipe, slot, process, read_fd)
        logger.info("worker %s spawned (pid %d)", slot.spec.worker_id, process.pid,
                    extra={"event": Event.WORKER_SPAWNED, "worker_id": slot.spec.worker_id, "pid": process.pid})
        self._publish()
        if self._stop_requested.is_set():  # a stop came while it was being spawned
            self._signal(slot, 2 if self._stop_signals > 1 else 1)
        return await slot.exited

    def _on_ready_pipe(self, slot: Slot, process: subprocess.Popen[bytes], fd: int) -> None:
        try:
            data = os.read(fd, 64)
        except OSError:
            data = b""
        self._loop.remove_reader(fd)
        os.close(fd)
        if b"ready" in data and slot.process is process and process.returncode is None:
            slot.ready = True
            slot.state = "stopping" if slot.signals_sent or slot.replacing else "running"
            logger.info("worker %s is running (pid %d)", slot.spec.worker_id, process.pid,
                        extra={"event": Event.WORKER_READY, "worker_id": slot.spec.worker_id, "pid": process.pid})
            self._publish()

    def _give_up(self, slot: Slot, code: int) -> None:
        slot.gave_up, slot.state = True, "gave-up"
        why = "bad usage: restarting cannot help" if code == EXIT_USAGE else f"{slot.failures} failures in a row"
        logger.error("giving up on worker %s: it exited (%s) — %s; see its output above", slot.spec.worker_id,
                     signal_name(code), why,
                     extra={"event": Event.WORKER_GAVE_UP, "worker_id": slot.spec.worker_id, "code": code})
        self._publish()
        if all(s.gave_up for s in self._slots):
            self._stop(immediate=False)

    # -- reaping --------------------------------------------------------------------------

    def _reap(self) -> None:
        for pid, slot in list(self._by_pid.items()):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # reaped by someone else: its status is lost
                done, status = pid, 255 << 8
            if done:
                self._finished(slot, os.waitstatus_to_exitcode(status))
        if os.getpid() == 1:  # a container's init: adopted orphans are ours to reap
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                ours = self._by_pid.get(pid)
                if ours is not None:
                    self._finished(ours, os.waitstatus_to_exitcode(status))

    def _finished(self, slot: Slot, code: int) -> None:
        process = slot.process
        assert process is not None
        del self._by_pid[process.pid]
        process.returncode = code  # reaped here: Popen must not wait for it again
        slot.exit_code, slot.ready = code, False
        for timer in slot.timers:
            timer.cancel()
        slot.timers.clear()
        if self._stop_requested.is_set() or slot.replacing:  # asked to (an unasked exit is logged by its keeper)
            level = logging.INFO if code == 0 else logging.WARNING
            logger.log(level, "worker %s (pid %d) exited (%s)", slot.spec.worker_id, process.pid, signal_name(code),
                       extra={"event": Event.WORKER_EXITED, "worker_id": slot.spec.worker_id, "code": code})
        if slot.exited is not None and not slot.exited.done():
            slot.exited.set_result(code)
        self._publish()

    async def _reap_periodically(self) -> None:
        while True:
            await asyncio.sleep(REAP_EVERY)
            self._reap()

    # -- stopping -------------------------------------------------------------------------

    def _on_stop_signal(self, signum: int) -> None:
        self._stop_signals += 1
        immediate = self._stop_signals > 1
        logger.warning("received %s: %s", signal.Signals(signum).name,
                       "stopping every worker at once" if immediate else
                       "stopping every worker gracefully (send it again to stop at once)",
                       extra={"event": Event.SUPERVISOR_STOPPING, "signal": signum})
        self._stop(immediate=immediate)

    def _stop(self, *, immediate: bool) -> None:
        self._stop_requested.set()
        self._state = "stopping"
        notify_systemd("STOPPING=1")
        for slot in self._slots:
            slot.wake.set()
            self._signal(slot, 2 if immediate else 1)
        self._publish()

    def _signal(self, slot: Slot, wanted: int) -> None:
        """Bring the slot's worker to ``wanted`` stop signals (1 graceful, 2 immediate, 3 kill)."""
        process = slot.process
        if process is None or process.pid not in self._by_pid:
            return  # not running (a pid is only signalled until it is reaped, so never a stranger)
        slot.state = "stopping"
        if wanted >= 3:
            logger.error("worker %s (pid %d) did not stop; killing it", slot.spec.worker_id, process.pid,
                         extra={"event": Event.WORKER_EXITED, "worker_id": slot.spec.worker_id})
            os.kill(process.pid, signal.SIGKILL)
            return
        if slot.signals_sent >= wanted:
            return
        # os.kill, not Popen.send_signal: that one polls, and would reap the worker behind
        # the reaper's back (losing its exit status).
        if slot.signals_sent == 0:
            os.kill(process.pid, signal.SIGTERM)
            slot.signals_sent, slot.first_signal_at = 1, self._loop.time()
            slot.timers.append(self._loop.call_later(slot.spec.grace + ESCALATE_AFTER, self._signal, slot, 2))
            if wanted == 1:
                return
        # The worker ignores a second signal closer than half a second to its first (one
        # Ctrl-C reaching every process is one request): however soon the stop turned
        # immediate — two signals to the supervisor 0.1 s apart, `aiojobs stop --timeout 0.1`
        # — the second goes no sooner than SIGNAL_SPACING after the first.
        early = slot.first_signal_at + SIGNAL_SPACING - self._loop.time()
        if early > 0:
            slot.timers.append(self._loop.call_later(early, self._signal, slot, 2))
            return
        os.kill(process.pid, signal.SIGTERM)
        slot.signals_sent = 2
        slot.timers.append(self._loop.call_later(KILL_AFTER, self._signal, slot, 3))

    async def _last_resort(self) -> None:
        """On the way out for any reason: no worker outlives the supervisor."""
        if not self._by_pid:
            return
        self._stop(immediate=False)
        deadline = time.monotonic() + max(s.spec.grace for s in self._slots) + ESCALATE_AFTER + KILL_AFTER + 1
        while self._by_pid and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            self._reap()
        for pid in list(self._by_pid):
            os.kill(pid, signal.SIGKILL)
        while self._by_pid:
            await asyncio.sleep(0.05)
            self._reap()

    # -- rolling restart ------------------------------------------------------------------

    def _on_hangup(self) -> None:
        if self._stop_requested.is_set():
            return
        self._generation += 1
        self._restart = {"generation": self._generation, "status": "running"}
        logger.warning("received SIGHUP: replacing the %d worker(s) one by one", len(self._slots),
                       extra={"event": Event.SUPERVISOR_RESTARTING, "generation": self._generation})
        self._publish()
        if not any(t.get_name() == "aiojobs-rolling-restart" and not t.done() for t in self._tasks):
            task = asyncio.ensure_future(self._roll())
            task.set_name("aiojobs-rolling-restart")
            self._tasks.add(task)

    async def _roll(self) -> None:
        target = 0
        while target != self._generation and not self._stop_requested.is_set():
            target = self._generation
            for slot in self._slots:
                if self._stop_requested.is_set() or target != self._generation:
                    break
                if not await self._replace(slot, target):
                    self._restart = {"generation": self._generation, "status": "failed",
                                     "worker": slot.spec.worker_id}
                    logger.error("rolling restart stopped: the new worker %s did not start; the others keep "
                                 "running the code they had", slot.spec.worker_id,
                                 extra={"event": Event.SUPERVISOR_RESTARTING, "generation": self._generation})
                    self._publish()
                    return
        if not self._stop_requested.is_set():
            self._restart = {"generation": self._generation, "status": "done"}
            logger.info("rolling restart done", extra={"event": Event.SUPERVISOR_RESTARTING,
                                                       "generation": self._generation})
            self._publish()

    async def _replace(self, slot: Slot, target: int) -> bool:
        """Stop the slot's worker gracefully and wait for its successor to be running."""
        if slot.gave_up:  # new code may fix it: a fresh chance
            slot.gave_up, slot.failures = False, 0
            self._keep(slot)
        elif slot.generation < target:
            if slot.process is not None and slot.process.pid in self._by_pid:
                slot.replacing = True
                self._signal(slot, 1)
            else:
                slot.wake.set()  # in backoff: start the new one now
        await self._until(lambda: self._stop_requested.is_set() or slot.gave_up or (
            slot.generation >= target and (slot.ready or slot.exit_code is not None)))
        return self._stop_requested.is_set() or (slot.ready and not slot.gave_up)

    # -- publishing -----------------------------------------------------------------------

    async def _until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            changed = self._changed
            await changed.wait()

    def _publish(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        if self._state == "starting" and all(s.ready or s.gave_up for s in self._slots):
            self._state = "running"
        if self._pidfile is None:
            return
        grace = max(s.spec.grace for s in self._slots)
        self._pidfile.publish({
            "pid": os.getpid(), "start_time": start_time(os.getpid()), "started_at": _iso(self._started_at),
            "state": self._state, "generation": self._generation, "restart": self._restart,
            "stop_timeout": grace + ESCALATE_AFTER + KILL_AFTER, "cwd": os.getcwd(),
            "workers": [slot.public() for slot in self._slots],
        })

    async def _announce_ready(self) -> None:
        await self._until(lambda: self._stop_requested.is_set() or all(s.ready or s.gave_up for s in self._slots))
        if self._stop_requested.is_set():
            return
        running = sum(s.ready for s in self._slots)
        self._close_ready_fd(f"ready {running} {len(self._slots)}\n")
        notify_systemd("READY=1")

    def _close_ready_fd(self, message: str) -> None:
        fd, self._ready_fd = self._ready_fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(fd, message.encode())
        with contextlib.suppress(OSError):
            os.close(fd)


def _spawn(argv: list[str], ready_fd: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Fork and exec at once (no Python runs in the child before exec). Called from the loop's
    main thread: PR_SET_PDEATHSIG fires when the thread that spawned a process ends."""
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, pass_fds=(ready_fd,),  # noqa: S603 - our own argv
                            process_group=0, env=env)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
