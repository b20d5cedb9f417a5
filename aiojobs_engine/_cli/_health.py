"""``aiojobs healthcheck``: one answer for a Kubernetes probe, a load balancer or a monitor.

It checks, in order, and stops at the first failure: the database answers (a SQLite file
must exist: a probe never creates one), its schema is exactly the one this code's
migrations build (not behind: run ``aiojobs migrate``; not ahead: this host runs older
code), and, when asked, engines are alive (registered with a heartbeat fresher than
``stale_after``). It never migrates. Exit codes, distinct so a probe's log says which:

    0  healthy
    2  bad usage (the command line itself)
    3  the database cannot be reached (or did not answer within --timeout)
    4  the schema is behind or ahead of this code
    5  fewer live engines than --require-engines, or an --engine that is not alive

Opening the engine stores the queue settings and schedules the application declares, as
every command with ``--app`` does; leave ``--app`` out (``--url`` alone) for a probe that
writes nothing.
"""

from __future__ import annotations

import asyncio
from argparse import Namespace
from datetime import UTC, datetime
from typing import Any, Final

from .. import BackendError, Engine, SchemaError
from ._database import missing_file
from ._errors import EXIT_OK
from ._output import emit, emit_json

EXIT_UNREACHABLE: Final = 3
EXIT_SCHEMA: Final = 4
EXIT_ENGINES: Final = 5


def prepare(engine: Engine, args: Namespace) -> None:
    engine.configure(auto_migrate=False)  # a probe reports a schema behind; it never upgrades it


async def healthcheck(engine: Engine, args: Namespace) -> int:
    report: dict[str, Any] = {"healthy": False, "url": engine.url}
    try:
        async with asyncio.timeout(args.timeout):
            code = await _check(engine, args, report)
    except TimeoutError:
        report["problem"] = f"the database did not answer within {args.timeout:g}s"
        code = EXIT_UNREACHABLE
    report["healthy"] = code == EXIT_OK
    _print(args, report)
    return code


async def _check(engine: Engine, args: Namespace, report: dict[str, Any]) -> int:
    missing = missing_file(engine)
    if missing is not None:
        report["problem"] = f"no database at {missing.resolve()}"
        return EXIT_UNREACHABLE
    try:
        await engine.open()
    except SchemaError as exc:
        report["problem"] = str(exc)
        return EXIT_SCHEMA
    except (BackendError, OSError) as exc:
        report["problem"] = f"the database cannot be reached: {exc}"
        return EXIT_UNREACHABLE
    try:
        report["schema_version"] = await engine.backend.schema_version()
        return await _engines(engine, args, report)
    except BackendError as exc:
        report["problem"] = f"the database cannot be reached: {exc}"
        return EXIT_UNREACHABLE
    finally:
        await engine.close()


async def _engines(engine: Engine, args: Namespace, report: dict[str, Any]) -> int:
    now = datetime.now(UTC)
    stale_after = engine.settings.stale_after
    alive = sorted(e.id for e in await engine.list_engines()
                   if (now - e.heartbeat_at).total_seconds() <= stale_after)
    report["engines_alive"] = alive
    if len(alive) < args.require_engines:
        report["problem"] = (f"{len(alive)} engine(s) alive (a heartbeat within {stale_after:g}s), "
                             f"{args.require_engines} required")
        return EXIT_ENGINES
    absent = [name for name in args.engine if name not in alive]
    if absent:
        report["problem"] = f"not alive: {', '.join(absent)} (no heartbeat within {stale_after:g}s)"
        return EXIT_ENGINES
    return EXIT_OK


def _print(args: Namespace, report: dict[str, Any]) -> None:
    if args.json:
        emit_json(report)
        return
    if report["healthy"]:
        engines = report["engines_alive"]
        emit(f"healthy: {report['url']}, schema version {report['schema_version']}, "
             f"{len(engines)} engine(s) alive")
    else:
        emit(f"unhealthy: {report['problem']}")
