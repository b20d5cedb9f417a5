"""Detached mode, as RedwoodJS's runner has it: ``start``, ``stop``, ``restart``, ``status``.

``start`` runs ``aiojobs work ... --pidfile P`` in the background — a new session, stdin
from /dev/null, output appended to the log file — and returns once the supervisor reports
its workers running (over a pipe: a supervisor that dies while starting is seen at once).
``stop`` sends SIGTERM and waits for the pid file's lock to go (the supervisor is gone), up
to the graceful stop's length; then a second SIGTERM (immediate), then SIGKILL as a last
resort, after which the workers stop by themselves; any still alive a while later are
killed too. ``restart`` sends SIGHUP (the supervisor replaces its workers one by one) and
waits for the state file to say it is done. ``status`` prints the supervisor and its
workers. A stale pid file is reported and never trusted (see ``_pidfile``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from argparse import Namespace
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from .. import Engine
from ._errors import EXIT_FAILED, EXIT_OK, CommandFailed
from ._output import emit, emit_json, table
from ._pidfile import Found, absolute, inspect, read_state, remove_stale, require_posix
from ._plan import work_argv
from ._process import same_process, signal_name, start_time

POLL: Final = 0.05
IMMEDIATE_WAIT: Final = 20.0  # after the second SIGTERM, before SIGKILL
ORPHAN_WAIT: Final = 20.0  # after a SIGKILL of the supervisor, for its workers to stop by themselves
SIGNAL_GAP: Final = 0.1  # at least this between the two SIGTERMs: sent back to back, the kernel may merge them
LOG_TAIL: Final = 20


def _paths(args: Namespace) -> Path:
    require_posix()
    return absolute(args.pidfile)


async def start(engine: Engine, args: Namespace) -> int:
    pidfile = _paths(args)
    logfile = absolute(args.logfile)
    found = inspect(pidfile)
    if found is not None and found.live:
        raise CommandFailed(f"aiojobs is already running (supervisor pid {found.pid}, pid file {pidfile})")
    if found is not None:
        _warn(f"stale pid file {pidfile} ({found.problem}): replacing it")
        remove_stale(found)
    logfile.parent.mkdir(parents=True, exist_ok=True)
    read_fd, write_fd = os.pipe()
    argv = [*work_argv(args), "--pidfile", str(pidfile), "--ready-fd", str(write_fd)]
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    try:
        process = _spawn_detached(argv, logfile, write_fd, env)
    finally:
        os.close(write_fd)
    try:
        report = await _read_report(read_fd, process, args.timeout)
    finally:
        os.close(read_fd)
    if not isinstance(report, tuple):
        # It said it failed, or closed the pipe: it is on its way out. Only a timeout finds it running.
        code = await _exit_code(process, 0.0 if report == "timeout" else 10.0)
        if code is not None:
            raise CommandFailed(f"the supervisor exited while starting ({signal_name(code)}); the end of {logfile}:\n"
                                f"{_tail(logfile)}")
        _abandon(process)
        raise CommandFailed(f"the supervisor (pid {process.pid}) did not report its workers running within "
                            f"{args.timeout:g}s; it keeps trying: see {logfile}, `aiojobs status`, `aiojobs stop`")
    _abandon(process)
    running, total = report
    if args.json:
        emit_json({"pid": process.pid, "workers": total, "running": running, "pidfile": str(pidfile),
                   "logfile": str(logfile)})
    else:
        emit(f"aiojobs started: supervisor pid {process.pid}, {running} of {total} worker(s) running "
             f"(pid file {pidfile}, log {logfile})")
    if running < total:
        _warn(f"{total - running} worker(s) could not start; see {logfile}")
        return EXIT_FAILED
    return EXIT_OK


async def _exit_code(process: subprocess.Popen[bytes], patience: float) -> int | None:
    """The supervisor's exit code if it ends within ``patience`` seconds, else None."""
    await _until(lambda: process.poll() is not None, patience)
    return process.returncode


async def _read_report(fd: int, process: subprocess.Popen[bytes], timeout: float) -> tuple[int, int] | str:
    """``(running, total)`` once the supervisor reports; else "failed" or "timeout"."""
    os.set_blocking(fd, False)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 128)
        except BlockingIOError:
            chunk = None
        if chunk == b"":  # every writer closed it: the supervisor ended (or failed) before being ready
            break
        if chunk:
            data += chunk
            if data.endswith(b"\n"):
                parts = data.decode(errors="replace").split()
                if len(parts) == 3 and parts[0] == "ready":
                    return int(parts[1]), int(parts[2])
                break
        if process.poll() is not None:
            break
        await asyncio.sleep(POLL)
    else:
        return "timeout"
    return "failed"


def _spawn_detached(argv: list[str], logfile: Path, ready_fd: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A new session (no terminal, no signals from this one's), stdin from /dev/null, output
    appended to the log file."""
    with logfile.open("ab") as log:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,  # noqa: S603 - our own argv
                                stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(ready_fd,), env=env)


def _abandon(process: subprocess.Popen[bytes]) -> None:
    # The supervisor lives on in its own session after this command exits and is reaped by
    # init; this Popen will never wait for it, so it must not warn that it is still running.
    process.returncode = 0


async def stop(engine: Engine, args: Namespace) -> int:
    pidfile = _paths(args)
    found = inspect(pidfile)
    if found is None or not found.live:
        _report_absent(pidfile, found, args)
        if found is not None:
            remove_stale(found)
        return EXIT_OK
    pid, state = _live_pid(found), found.state or {}
    timeout = args.timeout if args.timeout is not None else float(state.get("stop_timeout", 30.0))
    worker_starts = {w["pid"]: start_time(w["pid"]) for w in found.workers if isinstance(w.get("pid"), int)}
    how = "gracefully"
    started = state.get("start_time")
    os.kill(pid, signal.SIGTERM)
    # However small --timeout is, the supervisor spaces its workers' two signals itself.
    if not await _until(lambda: _gone(pid, started), max(timeout, SIGNAL_GAP)):
        how = "at once (the graceful stop took too long)"
        _signal_if_same(pid, started, signal.SIGTERM)
        if not await _until(lambda: _gone(pid, started), IMMEDIATE_WAIT):
            how = "by SIGKILL (it did not stop)"
            _signal_if_same(pid, started, signal.SIGKILL)
            await _until(lambda: _gone(pid, started), 5.0)
    leftovers = await _wait_for_workers(worker_starts)
    if not inspect_live(pidfile):  # a supervisor that was killed left its files behind
        remove_stale(Found(pidfile, pid, "stopped", None))
    if args.json:
        emit_json({"pid": pid, "stopped": how, "killed_workers": leftovers})
    else:
        emit(f"aiojobs stopped {how} (supervisor pid {pid})"
             + (f"; killed worker(s) that outlived it: {', '.join(map(str, leftovers))}" if leftovers else ""))
    return EXIT_OK


def inspect_live(pidfile: Path) -> bool:
    found = inspect(pidfile)
    return found is not None and found.live


async def _wait_for_workers(starts: dict[int, int | None]) -> list[int]:
    """Workers stop by themselves when their supervisor is gone; kill any still alive after a while."""
    def alive() -> list[int]:
        return [pid for pid, started in starts.items() if same_process(pid, started)]

    await _until(lambda: not alive(), ORPHAN_WAIT)
    leftovers = alive()
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return leftovers


async def restart(engine: Engine, args: Namespace) -> int:
    pidfile = _paths(args)
    found = inspect(pidfile)
    if found is None or not found.live:
        _report_absent(pidfile, found, args)
        raise CommandFailed("nothing to restart: start it with `aiojobs start`")
    supervisor = _live_pid(found)
    state = found.state or {}
    generation = int(state.get("generation", 1)) + 1
    per_worker = float(state.get("stop_timeout", 30.0)) + 30.0
    timeout = args.timeout if args.timeout is not None else per_worker * max(1, len(found.workers))
    os.kill(supervisor, signal.SIGHUP)

    def finished() -> bool:
        restart_state = (read_state(pidfile) or {}).get("restart", {})
        return (isinstance(restart_state, dict) and int(restart_state.get("generation", 0)) >= generation
                and restart_state.get("status") in ("done", "failed")) or not inspect_live(pidfile)

    if not await _until(finished, timeout):
        raise CommandFailed(f"the workers were not all replaced within {timeout:g}s; see `aiojobs status`")
    after = read_state(pidfile) or {}
    result = after.get("restart", {})
    if not inspect_live(pidfile):
        raise CommandFailed(f"the supervisor (pid {supervisor}) ended during the restart; see its log")
    if result.get("status") == "failed":
        raise CommandFailed(f"restart stopped: the new worker {result.get('worker')} did not start; the other "
                            "workers keep running the code they had (see the log)")
    workers = after.get("workers", [])
    if args.json:
        emit_json({"pid": supervisor, "generation": result.get("generation"), "workers": workers})
    else:
        emit(f"aiojobs restarted {len(workers)} worker(s) (supervisor pid {supervisor})")
    return EXIT_OK


async def status(engine: Engine, args: Namespace) -> int:
    pidfile = _paths(args)
    found = inspect(pidfile)
    if found is None or not found.live:
        _report_absent(pidfile, found, args)
        return EXIT_FAILED
    state = found.state or {}
    workers = found.workers
    if args.json:
        emit_json({"pid": found.pid, "running": True, "pidfile": str(pidfile), "started_at": state.get("started_at"),
                   "state": state.get("state"), "workers": workers})
        return EXIT_OK
    running = sum(1 for w in workers if w.get("running"))
    emit(f"supervisor pid {found.pid}, {state.get('state', 'running')}, since {state.get('started_at', '?')}: "
         f"{running} of {len(workers)} worker(s) running")
    if workers:
        emit(table(["group", "id", "pid", "started_at", "running", "state", "restarts"],
                   [[w.get("group"), w.get("id"), w.get("pid"), w.get("started_at"), bool(w.get("running")),
                     w.get("state"), w.get("restarts")] for w in workers], right=["pid", "restarts"]))
    return EXIT_OK


def _report_absent(pidfile: Path, found: Found | None, args: Namespace) -> None:
    if found is None:
        message = f"aiojobs is not running (no pid file at {pidfile})"
    else:
        message = f"aiojobs is not running: stale pid file {pidfile} ({found.problem})"
    if args.json:
        stale: dict[str, Any] | None = None if found is None else {"pid": found.pid, "reason": found.problem}
        emit_json({"pid": None, "running": False, "pidfile": str(pidfile), "stale": stale, "workers": []})
    else:
        emit(message)


def _gone(pid: int, recorded_start: object) -> bool:
    """The process has ended (it releases the pid file a moment before it does)."""
    return not same_process(pid, recorded_start)


def _live_pid(found: Found) -> int:
    if found.pid is None:
        raise CommandFailed(f"the supervisor holding {found.pidfile} is still starting; try again in a moment")
    return found.pid


def _signal_if_same(pid: int, recorded_start: object, sig: int) -> None:
    if same_process(pid, recorded_start):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


async def _until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(POLL * 2)
    return True


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-LOG_TAIL:])


def _warn(message: str) -> None:
    print(f"aiojobs: {message}", file=sys.stderr)
