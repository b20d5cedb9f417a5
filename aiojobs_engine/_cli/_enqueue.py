"""``aiojobs enqueue NAME [ARGS...]``: put one job in the database from a shell.

Each ARG is read as JSON (``42``, ``true``, ``null``, ``[1, 2]``, ``{"a": 1}``,
``'"quoted"'``); a plain word that is not JSON (``alice``) is taken as a string, so
``aiojobs enqueue greet alice 3`` passes ``("alice", 3)``. Text that starts like JSON
(``[``, ``{``, ``"``) but does not parse is refused rather than passed as a string: that is
a typo, not a word. ``--kwargs`` takes one JSON object. The job's declared options apply
when ``--app`` declares it; the engine validates the call exactly as ``engine.enqueue`` does.
"""

from __future__ import annotations

import json
from argparse import Namespace
from typing import Any

from .. import ArgumentsError, Engine, SerializationError
from .._options import DEFAULT_QUEUE
from ._errors import EXIT_OK, CommandFailed, UsageError
from ._known import require_known
from ._output import emit, emit_json, record_dict, short_time

_LOOKS_LIKE_JSON = ("[", "{", '"')


def parse_argument(text: str) -> Any:
    """One positional argument: JSON, or a plain word as a string."""
    try:
        return json.loads(text)
    except ValueError as exc:
        if text.lstrip().startswith(_LOOKS_LIKE_JSON):
            raise UsageError(f"argument {text!r} starts like JSON but is not valid JSON: {exc}") from None
        return text


def parse_kwargs(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--kwargs must be a JSON object, e.g. '{{\"user_id\": 42}}': {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"--kwargs must be a JSON object, e.g. '{{\"user_id\": 42}}', got {text!r}")
    return value


async def enqueue(engine: Engine, args: Namespace) -> int:
    positional = [parse_argument(text) for text in args.args]
    kwargs = parse_kwargs(args.kwargs) if args.kwargs is not None else {}
    if args.queue is not None:
        await require_known(engine, [args.queue], create=args.create)
    options: dict[str, Any] = {}
    for key in ("queue", "priority", "delay"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    try:
        record = await engine.options(**options).enqueue(args.name, *positional, **kwargs)
    except (ArgumentsError, SerializationError) as exc:
        raise UsageError(str(exc)) from None  # the command line's arguments are wrong: bad usage, exit 2
    if record is None:
        raise CommandFailed(f"job {args.name!r} was not enqueued: an on_before_add hook vetoed it")
    if args.json:
        emit_json(record_dict(record))
    else:
        when = "" if record.available_at <= record.inserted_at else f", available at {short_time(record.available_at)}"
        queue = "" if record.queue == DEFAULT_QUEUE else f" on queue {record.queue}"
        emit(f"enqueued job {record.id} ({record.name}){queue}{when}")
    return EXIT_OK
