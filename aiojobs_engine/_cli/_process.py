"""What the supervisor and its workers ask of the operating system, in one place.

Process identity comes from ``/proc`` where there is one (Linux): a process's start time
(clock ticks since boot, field 22 of ``/proc/<pid>/stat``) does not change for its life and
differs for a later process that happens to get the same pid, so "pid N started at T" names
one process for good. Elsewhere these helpers answer ``None`` and callers rely on the pid
file's lock alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import sys
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def pid_alive(pid: int) -> bool:
    """Does a process with this pid exist (and is it more than a zombie)?"""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, it is just not ours
    return _proc_state(pid) != "Z"


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), else None."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    try:
        return int(fields[19])  # field 22 of stat, counted after "pid (comm)"
    except ValueError:
        return None


def command_line(pid: int) -> str | None:
    """The process's command line, space-separated (Linux), else None."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part) or None


def same_process(pid: int, recorded_start: object) -> bool:
    """Is ``pid`` still the process that had ``recorded_start`` (True when either is unknown)?"""
    if not isinstance(recorded_start, int):
        return pid_alive(pid)
    now = start_time(pid)
    return pid_alive(pid) and (now is None or now == recorded_start)


def _proc_state(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return None if not fields else fields[0]


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text(errors="replace")
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses; it ends at the last ")".
    return text[text.rfind(")") + 2:].split()


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent dies (prctl PR_SET_PDEATHSIG).

    The signal comes when the parent *thread* that spawned us ends, so the supervisor
    spawns from its main thread only. False where this is not available: the caller's
    ``getppid()`` watchdog is then the only guard.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def notify_systemd(state: str) -> None:
    """``sd_notify``: tell systemd (``Type=notify`` units) ``READY=1`` or ``STOPPING=1``.

    Nothing happens outside systemd ($NOTIFY_SOCKET unset); a failure is ignored, as
    systemd itself does in its client library.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or not hasattr(socket, "AF_UNIX"):
        return
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(state.encode())


def signal_name(code: int) -> str:
    """An exit status as people read it: ``exit code 1`` or ``killed by SIGKILL``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
