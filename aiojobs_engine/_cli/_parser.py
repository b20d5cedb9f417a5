"""The command grammar: one argparse parser, its subcommands, and what each one runs.

The global options ``--app``, ``--url``, ``--config`` and ``--json`` are accepted before or
after every command (``aiojobs --app x:engine jobs list`` and ``aiojobs jobs list --app
x:engine``); bare ``jobs``, ``queues`` and ``cron`` list. Each command's parser sets
``handler`` (an ``async (engine, args) -> exit code``, run inside ``async with engine``
unless ``opens_itself``), ``database`` (may it create one: ``_database``), ``json_output``
and, where they apply, ``precheck`` (run before the event loop starts), ``needs_app``,
``no_app`` (the command never loads one) and ``uvloop``.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

from .. import Engine, JobState, __version__
from .._groups import IMPLICIT_GROUP, MAX_PROCESSES
from .._options import UNCHANGED
from . import _cron, _dashboard, _detached, _enqueue, _health, _jobs, _maintenance, _queues, _work, _worker
from ._app import APP_ENV
from ._database import Database

Handler = Callable[[Engine, argparse.Namespace], Awaitable[int]]
Precheck = Callable[[Engine, argparse.Namespace], None]

_LOG_LEVELS = ("debug", "info", "warning", "error")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiojobs", description="Run and manage aiojobs_engine background jobs.",
        epilog=f"--app defaults to ${APP_ENV}; the database URL to --url, else the engine's own.",
    )
    parser.add_argument("--version", action="version", version=f"aiojobs {__version__}")
    _add_common(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    work = _command(commands, "work", "run jobs until SIGINT/SIGTERM (in this process, or as a supervisor "
                    "of worker processes)", _work.work, json=False)
    _add_worker_options(work, log_level="info")
    _add_supervisor_options(work, pidfile=None)
    work.set_defaults(needs_app=True, uvloop=True, opens_itself=True, precheck=_work.prepare_work,
                      database=Database.CREATES)
    worker = _command(commands, "worker", "run one worker process of a group (for systemd, supervisord, "
                      "Kubernetes)", _worker.worker, json=False)
    _add_worker_options(worker, log_level="info")
    worker.add_argument("--group", default=IMPLICIT_GROUP, metavar="NAME",
                        help=f"the worker group (default: {IMPLICIT_GROUP}, the implicit group)")
    worker.add_argument("--id", type=_count(0, 99_999, "--id"), default=0, metavar="N",
                        help="this worker's number in its group: its worker id is <host>:<group>:<N> (default 0)")
    worker.add_argument("--supervisor-pid", type=int, help=argparse.SUPPRESS)
    worker.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    worker.set_defaults(needs_app=True, uvloop=True, opens_itself=True, precheck=_worker.prepare_worker,
                        database=Database.CREATES)

    start = _command(commands, "start", "run the supervisor in the background", _detached.start)
    _add_worker_options(start, log_level="info")
    _add_supervisor_options(start, pidfile="aiojobs.pid")
    start.add_argument("--logfile", default="aiojobs.log", metavar="FILE",
                       help="where the supervisor and its workers write (default: ./aiojobs.log)")
    start.add_argument("--timeout", type=float, default=60.0, metavar="S",
                       help="seconds to wait for the workers to be running (default 60)")
    start.set_defaults(needs_app=True, opens_itself=True, precheck=_work.prepare_work, database=Database.CREATES)
    for name, help_text, handler in (
        ("stop", "stop the background supervisor gracefully", _detached.stop),
        ("restart", "replace the background supervisor's workers one by one (new code, no job lost)",
         _detached.restart),
        ("status", "show the background supervisor and its workers", _detached.status),
    ):
        control = _command(commands, name, help_text, handler)
        control.add_argument("--pidfile", default="aiojobs.pid", metavar="FILE",
                             help="the supervisor's pid file (default: ./aiojobs.pid)")
        if name != "status":
            control.add_argument("--timeout", type=float, metavar="S", help="seconds to wait (default: from "
                                 "the workers' shutdown_grace)")
        control.set_defaults(no_app=True, opens_itself=True, database=Database.NONE)
    workoff = _command(commands, "workoff", "run every job due now, then exit", _work.workoff)
    _add_worker_options(workoff, log_level="warning")
    workoff.set_defaults(needs_app=True, uvloop=True, opens_itself=True, precheck=_work.configure_queues,
                         database=Database.CREATES)

    enqueue = _command(commands, "enqueue", "enqueue one job by name (arguments as JSON)", _enqueue.enqueue)
    enqueue.add_argument("name", metavar="NAME", help="the job's name")
    enqueue.add_argument("args", nargs="*", metavar="ARG",
                         help="positional arguments, each JSON (42, true, '[1, 2]'); a plain word is a string")
    enqueue.add_argument("--kwargs", metavar="JSON", help="keyword arguments, as one JSON object")
    enqueue.add_argument("--queue", metavar="Q", help="the queue (default: the job's declared queue, or default)")
    enqueue.add_argument("--priority", type=int, metavar="N", help="lower runs first (default 50)")
    enqueue.add_argument("--delay", type=float, metavar="SECONDS", help="run no sooner than this from now")
    _add_create(enqueue)
    enqueue.set_defaults(database=Database.CREATES)

    health = _command(commands, "healthcheck", "check the database, its schema and (if asked) live engines; exit "
                      "0 healthy, 3 unreachable, 4 schema behind or ahead, 5 engines missing", _health.healthcheck)
    health.add_argument("--require-engines", type=_count(0, 100_000, "--require-engines"), default=0, metavar="N",
                        help="unhealthy unless at least N engines have a fresh heartbeat (default 0)")
    health.add_argument("--engine", action="append", default=[], metavar="ID",
                        help="unhealthy unless this engine (worker id) has a fresh heartbeat (repeatable)")
    health.add_argument("--timeout", type=float, default=5.0, metavar="S",
                        help="seconds the whole check may take (default 5)")
    # The check reports a missing database (exit 3) itself rather than refusing the command line.
    health.set_defaults(opens_itself=True, precheck=_health.prepare, database=Database.NONE)

    # Bare `aiojobs jobs` and `aiojobs queues` list, as bare `aiojobs cron` does.
    jobs_parser = _command(commands, "jobs", "list, show, retry, cancel or snooze jobs (bare: list them)",
                           _jobs.list_jobs)
    _add_job_filters(jobs_parser, default=[])
    jobs = jobs_parser.add_subparsers(dest="jobs_command", required=False, metavar="ACTION")
    _add_job_filters(_command(jobs, "list", "list jobs, newest first", _jobs.list_jobs), default=argparse.SUPPRESS)
    for name, help_text, handler in (
        ("show", "show every field of a job", _jobs.show_job),
        ("retry", "run a failed, canceled or completed job again", _jobs.retry_job),
        ("cancel", "cancel a job (a running one is stopped by its engine)", _jobs.cancel_job),
    ):
        _command(jobs, name, help_text, handler).add_argument("id", type=int, metavar="ID")
    snooze = _command(jobs, "snooze", "put a waiting or snoozed job aside for a while", _jobs.snooze_job)
    snooze.add_argument("id", type=int, metavar="ID")
    snooze.add_argument("--delay", type=float, required=True, metavar="SECONDS",
                        help="seconds from now until the job may run")

    queues_parser = _command(commands, "queues", "list queues or change their settings (bare: list them)",
                             _queues.list_queues)
    queues = queues_parser.add_subparsers(dest="queues_command", required=False, metavar="ACTION")
    _command(queues, "list", "queues with their settings and job counts", _queues.list_queues)
    pause = _command(queues, "pause", "stop claiming jobs of a queue", _queues.pause_queue)
    resume = _command(queues, "resume", "claim jobs of a paused queue again", _queues.resume_queue)
    setting = _command(queues, "set", "store a queue's concurrency, priority, rate limit or per-key limits",
                       _queues.set_queue)
    for changing in (pause, resume, setting):
        changing.add_argument("queue", metavar="Q")
        _add_create(changing)
    setting.add_argument("--concurrency", type=int, help="jobs of this queue each engine runs at once")
    setting.add_argument("--priority", type=int, help="queue priority (lower is claimed first)")
    # Left out, a limit stays as stored (UNCHANGED); 'none' removes it.
    setting.add_argument("--rate", type=_queues.parse_rate, default=UNCHANGED, metavar="N/WINDOW",
                         help="at most N job starts in any WINDOW across all engines, e.g. 20/1s, 100/1m, 5/500ms; "
                              "'none' removes the limit")
    setting.add_argument("--per-key", type=_queues.parse_per_key, default=UNCHANGED, metavar="N",
                         help="at most N jobs of one concurrency key claimed or running at once across all engines "
                              "(jobs without a key are not limited); 'none' removes the limit")
    setting.add_argument("--rate-per-key", type=_queues.parse_rate_per_key, default=UNCHANGED, metavar="N/WINDOW",
                         help="at most N starts of one concurrency key in any WINDOW, e.g. 5/1s; "
                              "'none' removes the limit")
    _command(queues, "delete", "delete the stored settings of a queue that holds no job",
             _queues.delete_queue).add_argument("queue", metavar="Q")

    # Bare `aiojobs cron` lists, as `aiojobs cron list` does.
    cron_parser = _command(commands, "cron", "recurring schedules and their next runs (bare: list them)",
                           _cron.list_schedules)
    cron = cron_parser.add_subparsers(dest="cron_command", required=False, metavar="ACTION")
    _command(cron, "list", "schedules with their last and next ticks", _cron.list_schedules)
    for name, help_text, handler in (
        ("pause", "stop enqueuing a schedule's ticks", _cron.pause_schedule),
        ("resume", "enqueue a paused schedule's ticks again (missed ones are not run)", _cron.resume_schedule),
        ("remove", "delete a stored schedule", _cron.remove_schedule),
    ):
        _command(cron, name, help_text, handler).add_argument("name", metavar="NAME")

    migrate = _command(commands, "migrate", "bring the database schema up to date", _maintenance.migrate)
    migrate.set_defaults(opens_itself=True, database=Database.CREATES)
    _command(commands, "prune", "delete finished jobs past their retention now", _maintenance.prune)
    clear = _command(commands, "clear", "delete jobs (every job not held by an engine by default)",
                     _maintenance.clear)
    clear.add_argument("--state", type=_states(_maintenance.CLEARABLE), action="extend", default=[],
                       help="only jobs in these states")
    clear.add_argument("--queue", type=_names, action="extend", default=[], help="only jobs of these queues")
    clear.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    clear.set_defaults(precheck=_maintenance.check_can_confirm)

    _dashboard.add_options(_command(commands, "dashboard", _dashboard.HELP, _dashboard.serve, json=False))
    return parser


def _command(group: Any, name: str, help_text: str, handler: Handler, *, json: bool = True) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = group.add_parser(name, help=help_text, description=help_text)
    _add_common(parser)
    parser.set_defaults(handler=handler, database=Database.EXISTING, json_output=json)
    return parser


def _add_common(parser: argparse.ArgumentParser) -> None:
    """The global options, on the top parser and on every command's, so they go before or after it.

    SUPPRESS: an option given before the command is not reset by the command's parser.
    """
    parser.add_argument("--app", default=argparse.SUPPRESS, metavar="MODULE:ATTR",
                        help=f"the application's engine, e.g. myapp.jobs:engine (default: ${APP_ENV})")
    parser.add_argument("--url", default=argparse.SUPPRESS, help="database URL (overrides the engine's)")
    parser.add_argument("--config", default=argparse.SUPPRESS, metavar="FILE",
                        help="a TOML file naming the app and url, and declaring worker groups")
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print JSON (an array for lists, an object for one item)")


def _add_job_filters(parser: argparse.ArgumentParser, *, default: Any) -> None:
    # On the bare `jobs` and on `jobs list`; SUPPRESS on the latter keeps a filter given before it.
    parser.add_argument("--state", type=_states(tuple(JobState)), action="extend", default=default,
                        help="only jobs in these states (repeat, or comma-separate)")
    parser.add_argument("--queue", type=_names, action="extend", default=default, help="only jobs of these queues")
    parser.add_argument("--name", type=_names, action="extend", default=default, help="only jobs of these names")
    parser.add_argument("--limit", type=int, default=100 if default == [] else default,
                        help="at most this many jobs (default 100)")


def _add_create(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--create", action="store_true",
                        help="accept a queue that no job, schedule or stored setting names yet (creates it)")


def _add_worker_options(parser: argparse.ArgumentParser, *, log_level: str) -> None:
    parser.add_argument("--queues", metavar="A,B", help="work only these queues (default: every queue)")
    _add_create(parser)
    parser.add_argument("--concurrency", type=int, metavar="N",
                        help="jobs of each queue named in --queues run at once (stored for the queue)")
    parser.add_argument("--log-level", choices=_LOG_LEVELS, default=log_level, help=f"default: {log_level}")


def _add_supervisor_options(parser: argparse.ArgumentParser, *, pidfile: str | None) -> None:
    parser.add_argument("--processes", type=_count(1, MAX_PROCESSES, "--processes"), metavar="N",
                        help="run N worker processes under a supervisor (of each group; default for groups: "
                             "one per core)")
    parser.add_argument("--group", action="append", default=[], metavar="NAME",
                        help="run this worker group (repeat for more; default: every declared group)")
    parser.add_argument("--max-restarts", type=_count(0, 1000, "--max-restarts"), default=10, metavar="N",
                        help="failed restarts in a row before the supervisor gives up on a worker (default 10)")
    where = f" (default: ./{pidfile})" if pidfile else " (makes `work` a supervisor that `status` can see)"
    parser.add_argument("--pidfile", default=pidfile, metavar="FILE", help=f"the supervisor's pid file{where}")
    parser.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)


def _count(minimum: int, maximum: int, option: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} takes a whole number, got {text!r}") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"{option} must be between {minimum} and {maximum}, got {value}")
        return value

    return parse


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _states(accepted: tuple[JobState, ...]) -> Callable[[str], list[JobState]]:
    def parse(text: str) -> list[JobState]:
        states = []
        for part in _names(text):
            if part not in accepted:
                raise argparse.ArgumentTypeError(
                    f"invalid state {part!r} (choose from {', '.join(accepted)})")
            states.append(JobState(part))
        return states

    return parse
