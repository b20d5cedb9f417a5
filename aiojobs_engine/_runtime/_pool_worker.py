"""The child side of the process pool: one process, one job at a time, JSON over a pipe.

Runs in a freshly spawned interpreter (never forked: the parent has threads). It imports the
job's module by name, runs the body, and answers with a small JSON message. It ignores
SIGINT (the parent decides what a Ctrl-C means) and exits if its parent disappears, so a
killed engine leaves no orphan burning a core.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import _json
from .._context import JobContext, set_current_job
from .._control import Cancel, Complete, Delete, Fail, JobSignal, Retry, Snooze
from .._errors import SerializationError
from .._records import JobRecord, JobState
from . import _reimport

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

_targets: dict[tuple[str, str], Any] = {}


def worker_main(conn: Connection, parent_pid: int, preload: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True, name="aiojobs-orphan-watch").start()
    for module in preload:  # import the jobs' modules now, so no job's timeout pays for it
        _reimport.preloading = module  # an engine opened by this import is refused
        try:
            importlib.import_module(module)
        except Exception:
            traceback.print_exc()  # the job itself will fail with the same error, where it is seen
    _reimport.preloading = None
    conn.send_bytes(b'{"kind": "ready"}')
    while True:
        try:
            message = json.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        if message.get("op") == "stop":
            return
        reply = run_task(message)
        conn.send_bytes(json.dumps(reply).encode())


def _exit_with_parent(parent_pid: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(70)


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Run one job body; never raises."""
    try:
        target = _resolve(task["module"], task["qualname"])
        args, kwargs = json.loads(task["args"]), json.loads(task["kwargs"])
        set_current_job(JobContext(_record_from(task["record"]), task["engine_id"]))
        if task["is_class"]:
            result = target(*json.loads(task["constructor_args"])).run(*args, **kwargs)
        else:
            result = target(*args, **kwargs)
        return {"kind": "ok", "result": _json.dumps(result, "the job's return value")}
    except SerializationError as exc:
        return _final_error(exc)
    except JobSignal as sig:
        return _signal_reply(sig)
    except (Exception, SystemExit) as exc:
        return {
            "kind": "error",
            "name": type(exc).__name__,
            "message": str(exc),
            "traceback": "".join(traceback.format_exception(exc)),
            "final": False,
        }
    finally:
        set_current_job(None)


def _final_error(exc: SerializationError) -> dict[str, Any]:
    return {"kind": "error", "name": "SerializationError", "message": str(exc), "traceback": None, "final": True}


def _signal_reply(sig: JobSignal) -> dict[str, Any]:
    if isinstance(sig, Complete):
        try:
            return {"kind": "ok", "result": _json.dumps(sig.result, "the job's result")}
        except SerializationError as exc:
            return _final_error(exc)
    payload: dict[str, Any] = {"kind": "signal", "signal": type(sig).__name__}
    if isinstance(sig, Fail | Cancel):
        payload["reason"] = sig.reason
    elif isinstance(sig, Retry):
        payload["delay"], payload["reason"] = sig.delay, sig.reason
    elif isinstance(sig, Snooze):
        payload["delay"] = sig.delay
    elif not isinstance(sig, Delete):  # pragma: no cover - every signal is listed above
        payload["signal"] = "Fail"
        payload["reason"] = f"unknown signal {type(sig).__name__}"
    return payload


def signal_from_reply(reply: dict[str, Any]) -> JobSignal:
    """Rebuild, in the parent, the signal a child job raised."""
    kind = reply["signal"]
    if kind == "Retry":
        return Retry(reply.get("delay"), reply.get("reason", "retry requested"))
    if kind == "Snooze":
        return Snooze(reply["delay"])
    if kind == "Cancel":
        return Cancel(reply.get("reason", "canceled by the job"))
    if kind == "Delete":
        return Delete()
    return Fail(reply.get("reason", "failed by the job"))


def _resolve(module_name: str, qualname: str) -> Callable[..., Any]:
    key = (module_name, qualname)
    target = _targets.get(key)
    if target is None:
        if module_name == "__main__":
            # Under spawn, the parent's main script is importable as __mp_main__.
            module = sys.modules.get("__mp_main__") or importlib.import_module("__main__")
        else:
            module = importlib.import_module(module_name)
        obj: Any = module
        for part in qualname.split("."):
            obj = getattr(obj, part)
        definition = getattr(obj, "definition", None)  # a JobHandle wraps the function
        target = definition.target if definition is not None else obj
        _targets[key] = target
    return target  # type: ignore[no-any-return]


def record_to_json(record: JobRecord) -> dict[str, Any]:
    """What the child needs of the record for ``current_job()``."""
    return {
        "id": record.id, "queue": record.queue, "name": record.name, "args": record.args,
        "kwargs": record.kwargs, "constructor_args": record.constructor_args, "state": record.state.value,
        "priority": record.priority, "attempt": record.attempt, "max_attempts": record.max_attempts,
        "timeout": record.timeout, "inserted_at": record.inserted_at.isoformat(),
        "available_at": record.available_at.isoformat(),
        "attempted_at": record.attempted_at.isoformat() if record.attempted_at else None,
        "claimed_by": record.claimed_by, "meta": record.meta,
    }


def _record_from(data: dict[str, Any]) -> JobRecord:
    def when(value: str | None) -> datetime | None:
        return None if value is None else datetime.fromisoformat(value)

    inserted_at = when(data["inserted_at"])
    available_at = when(data["available_at"])
    assert inserted_at is not None and available_at is not None
    return JobRecord(
        id=data["id"], queue=data["queue"], name=data["name"], args=data["args"], kwargs=data["kwargs"],
        constructor_args=data["constructor_args"], state=JobState(data["state"]), priority=data["priority"],
        attempt=data["attempt"], max_attempts=data["max_attempts"], timeout=data["timeout"],
        inserted_at=inserted_at, available_at=available_at, attempted_at=when(data["attempted_at"]),
        claimed_by=data["claimed_by"], meta=data["meta"],
    )
