"""The ``aiojobs`` command line (also ``python -m aiojobs_engine``).

It sits on top of the public ``Engine`` API and nothing below it: load the application's
engine (``--app``) or a bare one, point it at ``--url``, run one command, map the outcome
to an exit code — 0 done, 1 failed, 2 bad usage — with errors as one line on stderr.
"""

from __future__ import annotations

import os
import sys
from argparse import Namespace

from .. import AiojobsError, ConfigurationError, Engine
from . import _loop
from ._app import APP_ENV, load_engine
from ._config import load_config
from ._database import command_name, is_named, require_existing
from ._errors import EXIT_FAILED, EXIT_USAGE, CommandFailed, UsageError
from ._parser import build_parser

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return _run(args)
    except (UsageError, ConfigurationError) as exc:
        return _error(exc, EXIT_USAGE)
    except (CommandFailed, AiojobsError) as exc:
        return _error(exc, EXIT_FAILED)
    except KeyboardInterrupt:
        print("aiojobs: interrupted", file=sys.stderr)
        return 130


def _run(args: Namespace) -> int:
    config = load_config(args.config) if getattr(args, "config", None) else None
    args.config_file = config
    spec = getattr(args, "app", None) or (config and config.app) or os.environ.get(APP_ENV) or None
    if getattr(args, "no_app", False):
        spec = None
    if getattr(args, "needs_app", False) and spec is None:
        raise UsageError(
            f"{args.command} needs --app module:attribute (or ${APP_ENV}) naming the application's engine: "
            "a worker without the application's jobs would fail every job"
        )
    args.app_spec = spec
    engine = Engine() if spec is None else load_engine(spec)
    url = getattr(args, "url", None) or (config and config.url) or None
    if url is not None:
        engine.configure(url=url)
    args.json = getattr(args, "json", False)
    if args.json and not getattr(args, "json_output", True):
        raise UsageError(f"{command_name(args)} prints no JSON (it logs as it runs); drop --json")
    precheck = getattr(args, "precheck", None)
    if precheck is not None:
        precheck(engine, args)
    require_existing(engine, args, named=is_named(app=spec, url=url))
    if getattr(args, "opens_itself", False):
        return _loop.run(lambda: args.handler(engine, args), prefer_uvloop=getattr(args, "uvloop", False))
    return _loop.run(lambda: _opened(engine, args))


async def _opened(engine: Engine, args: Namespace) -> int:
    async with engine:
        code: int = await args.handler(engine, args)
    return code


def _error(exc: BaseException, code: int) -> int:
    message = " ".join(str(exc).split()) or type(exc).__name__
    print(f"aiojobs: error: {message}", file=sys.stderr)
    return code
