"""A CPU worker process that re-runs the main script: found, and stopped, at once.

Worker processes are spawned, and a spawned interpreter imports the parent's main module
again (as ``__mp_main__``) before it does anything else. A script that enqueues and runs
jobs at its top level, with no ``if __name__ == "__main__":`` guard, then does it all again
in every worker: the job is stored once per worker, each worker starts its own engine and
its own pool, and the parent waits for workers that never report ready.

So the engine refuses to open or enqueue while a worker process is still importing (the
main script, or the job modules it preloads), and the worker exits with a code of its own,
which tells the pool to stop the engine with the message below instead of retrying.
"""

from __future__ import annotations

import os
import sys

WORKER_PROCESS_NAME = "aiojobs-cpu-worker"
REIMPORT_EXIT_CODE = 87  # a code of its own: what else would exit with it while importing?

MESSAGE = (
    "a CPU-bound job's worker process opened an engine or enqueued a job while importing your code "
    "(the main script {script}, or a job's module). Worker processes are started with 'spawn', which "
    "imports the main module again, and the jobs' modules: put the code that enqueues jobs and runs the "
    "engine under `if __name__ == \"__main__\":` (or in a function it calls), and keep module level to "
    "declarations."
)

preloading: str | None = None  # the job module the worker is importing, if it is


def main_script() -> str:
    main = sys.modules.get("__mp_main__") or sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return repr(path) if path else "the main module"


def in_worker_bootstrap() -> bool:
    """True in a CPU worker process that is still importing (not yet running jobs)."""
    process_module = sys.modules.get("multiprocessing.process")
    if process_module is None:  # multiprocessing never imported: not a worker
        return False
    current = process_module.current_process()
    if current.name != WORKER_PROCESS_NAME:
        return False
    return preloading is not None or bool(getattr(current, "_inheriting", False))


def refuse_in_worker_bootstrap() -> None:
    """Exit a worker process that is importing code which opens an engine or enqueues.

    An exit, not an exception: the script may catch exceptions, and the parent must learn
    the cause from the exit code (the worker cannot reach its pipe while importing)."""
    if in_worker_bootstrap():
        what = f"job module {preloading!r}" if preloading is not None else f"main script {main_script()}"
        print(f"aiojobs_engine: a CPU worker process opened an engine or enqueued a job while importing the "
              f"{what}. {MESSAGE.format(script=main_script())}", file=sys.stderr, flush=True)
        os._exit(REIMPORT_EXIT_CODE)
