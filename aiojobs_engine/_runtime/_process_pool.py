"""A pool of individually supervised worker processes for CPU-bound jobs.

Unlike ``concurrent.futures.ProcessPoolExecutor`` (where one dead worker breaks the whole
pool and fails every running job), each worker here is watched on its own: its pipe and
its process sentinel are registered with the event loop, so a worker that exits, crashes or
is killed fails only the job it was running and is replaced at once. Timeouts and
cancellation kill just that worker.

Workers are spawned (not forked: the engine has threads), start when the first CPU-bound job
arrives, import the modules of the engine's CPU-bound jobs, and only then report ready: a
job's timeout never pays for a cold interpreter. A worker that keeps dying at start-up is
restarted with growing delays, not in a tight loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError, EngineStateError, WorkerCrashedError
from .._log import Event, logger
from ._pool_worker import worker_main
from ._reimport import MESSAGE, REIMPORT_EXIT_CODE, WORKER_PROCESS_NAME, main_script

if TYPE_CHECKING:  # multiprocessing is imported when the first CPU-bound job comes
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

_STOP_GRACE = 2.0
_SHORT_LIFE = 5.0  # a worker dying sooner than this after its start counts as a start-up failure
_MAX_RESPAWN_DELAY = 30.0


@dataclass(eq=False)
class _Worker:
    process: BaseProcess
    conn: Connection
    started_at: float
    ready: bool = False
    reply: asyncio.Future[dict[str, Any]] | None = None
    job_id: int | None = None
    killed_on_purpose: bool = False
    dead: bool = False

    @property
    def pid(self) -> int | None:
        return self.process.pid


class PoolBody:
    """One job running in one worker: ``future`` gives the child's reply."""

    def __init__(self, pool: ProcessPool, worker: _Worker, future: asyncio.Future[dict[str, Any]]) -> None:
        self._pool = pool
        self._worker = worker
        self.future = future

    def stop(self) -> None:
        """Kill the worker (timeout, cancel, hand-back); the future then fails with WorkerCrashedError."""
        self._pool.kill(self._worker, reason="stopped by the engine")


class ProcessPool:
    def __init__(self, size: int, preload: Sequence[str] = (),
                 on_broken: Callable[[Exception], None] = lambda error: None) -> None:
        """``on_broken`` hears of a set-up no worker can start with (a main script that
        enqueues at import); the pool then starts no more workers."""
        self._size = size
        self._on_broken = on_broken
        self._broken = False
        self._preload = list(dict.fromkeys(m for m in preload if m != "__main__"))
        self._workers: set[_Worker] = set()
        self._idle: asyncio.Queue[_Worker] | None = None
        self._closed = False
        self._quick_deaths = 0
        self._respawns: set[asyncio.TimerHandle] = set()

    @property
    def size(self) -> int:
        return self._size

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self._workers if w.pid is not None and not w.dead]

    def _ensure_started(self) -> asyncio.Queue[_Worker]:
        if self._closed:
            raise EngineStateError("the process pool is closed")
        if self._idle is None:
            self._idle = asyncio.Queue()
            for _ in range(self._size):
                self._spawn_safely()
        return self._idle

    def _spawn_safely(self) -> None:
        try:
            self._spawn()
        except Exception:
            logger.exception("could not start a worker process; trying again shortly",
                             extra={"event": Event.POOL_WORKER_DIED})
            self._respawn_later()

    def _spawn(self) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        parent_conn, child_conn = context.Pipe(duplex=True)
        process = context.Process(
            target=worker_main, args=(child_conn, os.getpid(), self._preload), name=WORKER_PROCESS_NAME,
            daemon=True,
        )
        try:
            process.start()
        finally:
            child_conn.close()
        worker = _Worker(process=process, conn=parent_conn, started_at=time.monotonic())
        loop = asyncio.get_running_loop()
        loop.add_reader(parent_conn.fileno(), self._on_readable, worker)
        loop.add_reader(process.sentinel, self._on_exit, worker)
        self._workers.add(worker)

    def _respawn_later(self) -> None:
        delay = min(_MAX_RESPAWN_DELAY, 0.1 * 2 ** self._quick_deaths)
        handle: asyncio.TimerHandle | None = None

        def respawn() -> None:
            if handle is not None:
                self._respawns.discard(handle)
            if not self._closed:
                self._spawn_safely()

        handle = asyncio.get_running_loop().call_later(delay, respawn)
        self._respawns.add(handle)

    async def acquire(self) -> _Worker:
        """Wait for an idle, ready, live worker."""
        idle = self._ensure_started()
        while True:
            worker = await idle.get()
            if not worker.dead:
                return worker

    def release(self, worker: _Worker) -> None:
        if self._closed or self._idle is None or worker.dead or worker.reply is not None:
            return  # a dead worker's replacement joins the idle queue once it is ready
        self._idle.put_nowait(worker)

    def run(self, worker: _Worker, task: dict[str, Any]) -> PoolBody:
        """Send a task to an acquired worker; a worker that died meanwhile fails the future."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        worker.job_id = task.get("job_id")
        worker.killed_on_purpose = False
        if worker.dead:
            future.set_exception(WorkerCrashedError("the worker process died before the job could start"))
            return PoolBody(self, worker, future)
        worker.reply = future
        try:
            worker.conn.send_bytes(json.dumps(task).encode())
        except OSError as exc:
            worker.reply = None
            future.set_exception(WorkerCrashedError(f"the worker process could not be reached: {exc}"))
        return PoolBody(self, worker, future)

    def kill(self, worker: _Worker, *, reason: str) -> None:
        if worker.dead:
            return
        worker.killed_on_purpose = True
        logger.info(
            "killing worker process %s (job %s): %s", worker.pid, worker.job_id, reason,
            extra={"event": Event.POOL_WORKER_KILLED, "pid": worker.pid, "job_id": worker.job_id},
        )
        worker.process.kill()

    def _on_readable(self, worker: _Worker) -> None:
        try:
            message = json.loads(worker.conn.recv_bytes())
        except (EOFError, OSError):
            self._on_exit(worker)
            return
        if message.get("kind") == "ready":
            worker.ready = True
            if self._idle is not None and not self._closed:
                self._idle.put_nowait(worker)
            return
        future, worker.reply, worker.job_id = worker.reply, None, None
        if future is not None and not future.done():
            future.set_result(message)

    def _on_exit(self, worker: _Worker) -> None:
        if worker.dead:
            return
        worker.dead = True
        loop = asyncio.get_running_loop()
        loop.remove_reader(worker.conn.fileno())
        loop.remove_reader(worker.process.sentinel)
        worker.process.join(timeout=1.0)  # it has exited (its sentinel fired): this only reaps it
        code = worker.process.exitcode
        worker.conn.close()
        self._workers.discard(worker)
        future, job_id = worker.reply, worker.job_id
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        if future is not None and not future.done():
            if not worker.killed_on_purpose:
                logger.warning(
                    "worker process %s %s while running job %s", worker.pid, how, job_id,
                    extra={"event": Event.POOL_WORKER_DIED, "pid": worker.pid, "job_id": job_id, "exitcode": code},
                )
            future.set_exception(WorkerCrashedError(f"the worker process running this job {how}"))
        if self._closed or self._idle is None or self._broken:
            return
        if not worker.ready and code == REIMPORT_EXIT_CODE:
            self._break(ConfigurationError(MESSAGE.format(script=main_script())))
            return
        if not worker.ready or (time.monotonic() - worker.started_at < _SHORT_LIFE and not worker.killed_on_purpose):
            self._quick_deaths += 1
            if not worker.ready:
                logger.error("a worker process %s before it was ready (is a job module failing to import?)", how,
                             extra={"event": Event.POOL_WORKER_DIED, "pid": worker.pid, "exitcode": code})
            self._respawn_later()
        else:
            self._quick_deaths = 0
            self._spawn_safely()

    def _break(self, error: Exception) -> None:
        self._broken = True
        for handle in self._respawns:
            handle.cancel()
        for other in list(self._workers):  # its siblings are re-importing the same script
            other.killed_on_purpose = True
            other.process.kill()
        logger.error("%s", error, extra={"event": Event.POOL_WORKER_DIED})
        self._on_broken(error)

    async def close(self) -> None:
        """Ask idle workers to exit; kill any that do not within a short grace."""
        self._closed = True
        for handle in self._respawns:
            handle.cancel()
        workers = list(self._workers)
        for worker in workers:
            if worker.reply is None and not worker.dead:
                with contextlib.suppress(OSError):
                    worker.conn.send_bytes(b'{"op": "stop"}')
            elif not worker.dead:
                worker.process.kill()  # its job was handed back already
        # Each worker's sentinel becomes readable when it exits; wait for them all at once.
        alive = [w for w in workers if not w.dead]
        if alive:
            await asyncio.to_thread(_wait_all, [w.process.sentinel for w in alive], _STOP_GRACE)
        for worker in alive:
            if worker.process.is_alive():
                worker.process.kill()
            self._on_exit(worker)


def _wait_all(sentinels: list[int], timeout: float) -> None:
    """Wait until every process of ``sentinels`` has exited, or ``timeout`` has passed."""
    import multiprocessing.connection

    deadline = time.monotonic() + timeout
    pending = list(sentinels)
    while pending and (left := deadline - time.monotonic()) > 0:
        for ready in multiprocessing.connection.wait(pending, left):
            pending.remove(ready)  # type: ignore[arg-type]
