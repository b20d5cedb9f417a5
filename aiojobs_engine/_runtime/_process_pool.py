"""A pool of individually supervised worker processes for CPU-bound jobs.

Unlike ``concurrent.futures.ProcessPoolExecutor`` (where one dead worker breaks the whole
pool and fails every running job), each worker here is watched on its own: its pipe and
its process sentinel are registered with the event loop, so a worker that exits, crashes or
is killed fails only the job it was running and is replaced at once. Timeouts and
cancellation kill just that worker. Workers are spawned (not forked) and start lazily, on
the first CPU-bound job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import multiprocessing.connection
import os
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from .._errors import EngineStateError, WorkerCrashedError
from .._log import Event, logger
from ._pool_worker import worker_main

_STOP_GRACE = 2.0


@dataclass(eq=False)
class _Worker:
    process: BaseProcess
    conn: Connection
    reply: asyncio.Future[dict[str, Any]] | None = None
    job_id: int | None = None
    killed_on_purpose: bool = False
    dead: bool = False
    watchers: list[int] = field(default_factory=list)

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
    def __init__(self, size: int) -> None:
        self._size = size
        self._context = multiprocessing.get_context("spawn")
        self._workers: set[_Worker] = set()
        self._idle: asyncio.Queue[_Worker] | None = None
        self._closed = False

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
                self._idle.put_nowait(self._spawn())
        return self._idle

    def _spawn(self) -> _Worker:
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=worker_main, args=(child_conn, os.getpid()), name="aiojobs-cpu-worker", daemon=True
        )
        process.start()
        child_conn.close()
        worker = _Worker(process=process, conn=parent_conn)
        loop = asyncio.get_running_loop()
        loop.add_reader(parent_conn.fileno(), self._on_readable, worker)
        loop.add_reader(process.sentinel, self._on_exit, worker)
        self._workers.add(worker)
        return worker

    async def acquire(self) -> _Worker:
        """Wait for an idle, live worker."""
        idle = self._ensure_started()
        while True:
            worker = await idle.get()
            if not worker.dead:
                return worker

    def release(self, worker: _Worker) -> None:
        if self._closed or self._idle is None:
            return
        if worker.dead:
            return  # its replacement was queued when it died
        self._idle.put_nowait(worker)

    def run(self, worker: _Worker, task: dict[str, Any]) -> PoolBody:
        """Send a task to an acquired worker."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        worker.reply = future
        worker.job_id = task.get("job_id")
        worker.killed_on_purpose = False
        worker.conn.send_bytes(json.dumps(task).encode())
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
            reply = json.loads(worker.conn.recv_bytes())
        except (EOFError, OSError):
            self._on_exit(worker)
            return
        future, worker.reply, worker.job_id = worker.reply, None, None
        if future is not None and not future.done():
            future.set_result(reply)

    def _on_exit(self, worker: _Worker) -> None:
        if worker.dead:
            return
        worker.dead = True
        loop = asyncio.get_running_loop()
        loop.remove_reader(worker.conn.fileno())
        loop.remove_reader(worker.process.sentinel)
        worker.process.join(timeout=1.0)
        code = worker.process.exitcode
        worker.conn.close()
        self._workers.discard(worker)
        future, job_id = worker.reply, worker.job_id
        if future is not None and not future.done():
            how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
            if not worker.killed_on_purpose:
                logger.warning(
                    "worker process %s %s while running job %s", worker.pid, how, job_id,
                    extra={"event": Event.POOL_WORKER_DIED, "pid": worker.pid, "job_id": job_id, "exitcode": code},
                )
            future.set_exception(WorkerCrashedError(f"the worker process running this job {how}"))
        if not self._closed and self._idle is not None:
            self._idle.put_nowait(self._spawn())

    async def close(self) -> None:
        """Ask idle workers to exit; kill any that do not within a short grace."""
        self._closed = True
        workers = list(self._workers)
        for worker in workers:
            if worker.reply is None and not worker.dead:
                with contextlib.suppress(OSError):
                    worker.conn.send_bytes(b'{"op": "stop"}')
        # Each worker's sentinel becomes readable when it exits; wait for them all at once.
        alive = [w for w in workers if not w.dead]
        if not alive:
            return
        await asyncio.to_thread(multiprocessing.connection.wait, [w.process.sentinel for w in alive], _STOP_GRACE)
        for worker in alive:
            if worker.process.is_alive():
                worker.process.kill()
            self._on_exit(worker)
