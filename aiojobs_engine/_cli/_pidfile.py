"""The supervisor's pid file and the state file next to it.

``aiojobs.pid`` holds the supervisor's pid, one line, as service managers expect. The
supervisor holds an exclusive ``flock`` on it for its whole life; the kernel drops the lock
when the process ends, however it ends (SIGKILL included). So a pid file whose lock nobody
holds is stale whatever its pid now names — gone, or reused by another program — and is
reported, never trusted. ``aiojobs.pid.json`` (the state file) publishes the supervisor and
its workers for ``aiojobs status``; it is rewritten atomically (write, then rename).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import CommandFailed, UsageError
from ._process import command_line, pid_alive, same_process, start_time

try:
    import fcntl
except ImportError:  # Windows: no detached mode
    HAS_FLOCK = False
else:
    HAS_FLOCK = True

_LOCK_RETRY = 1.0


def require_posix() -> None:
    if not HAS_FLOCK or not hasattr(os, "setsid"):
        raise UsageError("detached mode (start, stop, restart, status, --pidfile) needs a POSIX system; "
                         "on Windows run `aiojobs work` under a service manager")


def absolute(path: str) -> Path:
    return Path(path).expanduser().resolve()


def state_path(pidfile: Path) -> Path:
    return pidfile.with_name(pidfile.name + ".json")


class PidFile:
    """The supervisor's side: hold the lock, publish the state, clean up at the end."""

    def __init__(self, path: Path) -> None:
        require_posix()
        self.path = path
        self.state_path = state_path(path)
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + _LOCK_RETRY  # a reader checks the lock for an instant
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    holder = _read_pid(self.path)
                    raise CommandFailed(
                        f"another aiojobs supervisor (pid {holder if holder is not None else '?'}) holds "
                        f"{self.path}; stop it first (aiojobs stop --pidfile {self.path})"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self._fd = fd

    def publish(self, state: dict[str, Any]) -> None:
        if self._fd is None:
            return
        temporary = self.state_path.with_name(f".{self.state_path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(state, indent=2), encoding="utf-8")
        os.replace(temporary, self.state_path)

    def release(self) -> None:
        if self._fd is None:
            return
        for path in (self.state_path, self.path):  # unlinked while still locked: no reader sees a gap
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        os.close(self._fd)
        self._fd = None


@dataclass(frozen=True)
class Found:
    """What a pid file says: a live supervisor (``problem`` None) or a stale file and why."""

    pidfile: Path
    pid: int | None
    problem: str | None
    state: dict[str, Any] | None

    @property
    def live(self) -> bool:
        return self.problem is None

    @property
    def workers(self) -> list[dict[str, Any]]:
        workers = (self.state or {}).get("workers", [])
        return [w for w in workers if isinstance(w, dict)] if isinstance(workers, list) else []


def inspect(pidfile: Path) -> Found | None:
    """Read a pid file (None if there is none) and judge it, from its lock, never its pid alone."""
    require_posix()
    try:
        text = pidfile.read_text(encoding="utf-8", errors="replace").strip()
    except FileNotFoundError:
        return None
    state = read_state(pidfile)
    try:
        pid = int(text)
    except ValueError:
        if _locked(pidfile):  # a supervisor is between taking the lock and writing its pid
            return Found(pidfile, None, None, state)
        return Found(pidfile, None, f"it holds {text[:40]!r}, not a pid", None)
    if _locked(pidfile):
        if state is not None and (state.get("pid") != pid or not same_process(pid, state.get("start_time"))):
            state = None  # left by an earlier supervisor: not this one's
        return Found(pidfile, pid, None, state)
    if not pid_alive(pid):
        return Found(pidfile, pid, f"pid {pid} is not running", state)
    command = command_line(pid)
    if state is not None and state.get("pid") == pid and state.get("start_time") == start_time(pid):
        return Found(pidfile, pid, f"pid {pid} does not hold the pid file's lock", state)
    return Found(pidfile, pid, f"pid {pid} is now another program ({command or 'unknown command'})", state)


def read_state(pidfile: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(state_path(pidfile).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def remove_stale(found: Found) -> None:
    for path in (state_path(found.pidfile), found.pidfile):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _locked(pidfile: Path) -> bool:
    try:
        fd = os.open(pidfile, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
