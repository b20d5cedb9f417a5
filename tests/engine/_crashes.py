"""What an engine that crashed leaves behind, for tests of recovery: its host's name as the
engine registers it, and the pid of a process that is gone."""

from __future__ import annotations

import subprocess
import sys


def this_host() -> str:
    from aiojobs_engine._engine import _hostname

    return _hostname()


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid
