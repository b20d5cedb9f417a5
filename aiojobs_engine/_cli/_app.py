"""Finding the application's engine: ``--app module:attribute`` (or ``$AIOJOBS_APP``).

As uvicorn does, the working directory goes on ``sys.path`` first, so ``--app myapp.jobs:engine``
works from the project's root without installing it. Every way this can fail is one
``UsageError`` whose message names the ``--app`` value and what to change.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Final

from .. import Engine
from ._errors import UsageError

APP_ENV: Final = "AIOJOBS_APP"


def load_engine(spec: str) -> Engine:
    """Import ``module:attribute`` (dotted attributes allowed) and check it is an ``Engine``."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name.strip() or not attribute.strip():
        raise UsageError(f"--app must look like module:attribute (for example myapp.jobs:engine), got {spec!r}")
    module_name, attribute = module_name.strip(), attribute.strip()
    _add_working_directory()
    try:
        target: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(f"{exc.name}.")):
            raise UsageError(
                f"--app {spec}: no module named {module_name!r} (run from the project's directory, "
                "or put it on PYTHONPATH)"
            ) from exc
        raise UsageError(f"--app {spec}: importing {module_name!r} failed: {_describe(exc)}") from exc
    except Exception as exc:
        raise UsageError(f"--app {spec}: importing {module_name!r} failed: {_describe(exc)}") from exc
    path = module_name
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise UsageError(f"--app {spec}: {path!r} has no attribute {part!r}") from None
        path = f"{path}.{part}"
    if not isinstance(target, Engine):
        raise UsageError(f"--app {spec}: {path} is a {type(target).__name__}, not an aiojobs_engine.Engine")
    return target


def _add_working_directory() -> None:
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def _describe(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
