"""Which worker processes a command runs: groups resolved, counted and turned into argv.

Groups come from the engine (``Engine(groups=...)``) and from ``--config`` (a group there
replaces the engine's of the same name). With no group declared, ``--processes N`` runs N
workers of one implicit group, ``default``, working ``--queues`` (every queue by default)
with ``--concurrency``. Each worker is ``python -m aiojobs_engine worker --group G --id N``
with the options that rebuild the same engine, so it needs nothing from the supervisor but
its command line.
"""

from __future__ import annotations

import socket
import sys
from argparse import Namespace

from .. import ConfigurationError, Engine
from .._groups import IMPLICIT_GROUP, WorkerGroup, check_groups, find_group, worker_id
from ._config import ConfigFile
from ._errors import UsageError
from ._supervisor import SlotSpec


def resolve_groups(engine: Engine, config: ConfigFile | None) -> tuple[WorkerGroup, ...]:
    """The engine's groups with the config file's on top; also set on the engine."""
    groups = list(engine.groups)
    for group in config.groups if config else ():
        groups = [g for g in groups if g.name != group.name] + [group]
    merged = check_groups(groups)
    if config and config.groups:
        engine.configure(groups=merged)
    return merged


def wants_supervisor(args: Namespace, groups: tuple[WorkerGroup, ...]) -> bool:
    return bool(args.processes is not None or args.group or getattr(args, "pidfile", None) or groups
                or args.command == "start")


def plan(engine: Engine, args: Namespace, groups: tuple[WorkerGroup, ...]) -> list[SlotSpec]:
    """The workers a supervisor keeps running, validated (bad usage fails here, not in a child)."""
    if groups:
        if args.queues is not None or args.concurrency is not None:
            raise UsageError(
                "--queues and --concurrency describe the one implicit group of `work --processes N`; this "
                "application declares worker groups: choose among them with --group"
            )
        try:
            selected = [find_group(groups, name) for name in args.group] if args.group else list(groups)
        except ConfigurationError as exc:
            raise UsageError(str(exc)) from None
    else:
        if args.group and set(args.group) != {IMPLICIT_GROUP}:
            raise UsageError(f"no worker group is declared (Engine(groups=...) or --config); --group "
                             f"{args.group[0]} names none")
        selected = [WorkerGroup(IMPLICIT_GROUP)]
    host = socket.gethostname()
    specs = []
    for group in selected:
        count = args.processes if args.processes is not None else group.process_count
        for index in range(count):
            wid = worker_id(host, group.name, index)
            settings = group.engine_settings(engine.settings, wid)  # a misfit fails now, in the terminal
            specs.append(SlotSpec(group=group.name, index=index, worker_id=wid,
                                  argv=tuple(worker_argv(args, group.name, index, implicit=not groups)),
                                  grace=settings.shutdown_grace))
    return specs


def worker_argv(args: Namespace, group: str, index: int, *, implicit: bool) -> list[str]:
    argv = [sys.executable, "-m", "aiojobs_engine", "worker", "--group", group, "--id", str(index),
            *_engine_options(args)]
    if implicit:
        argv += _queue_options(args)
    return argv


def work_argv(args: Namespace) -> list[str]:
    """``aiojobs work`` with the options of this ``start``: what the detached supervisor runs."""
    argv = [sys.executable, "-m", "aiojobs_engine", "work", *_engine_options(args), *_queue_options(args)]
    if args.processes is not None:
        argv += ["--processes", str(args.processes)]
    for name in args.group or ():
        argv += ["--group", name]
    argv += ["--max-restarts", str(args.max_restarts)]
    return argv


def _engine_options(args: Namespace) -> list[str]:
    argv = ["--log-level", args.log_level]
    if args.app_spec is not None:
        argv += ["--app", args.app_spec]
    if getattr(args, "url", None) is not None:
        argv += ["--url", args.url]
    if args.config_file is not None:
        argv += ["--config", str(args.config_file.path)]
    return argv


def _queue_options(args: Namespace) -> list[str]:
    argv = []
    if args.queues is not None:
        argv += ["--queues", args.queues, "--create"]  # known, or --create given: checked before they start
    if args.concurrency is not None:
        argv += ["--concurrency", str(args.concurrency)]
    return argv
