"""Optional modules and the extras that install their libraries.

An optional module (``contrib.prometheus``, ``contrib.opentelemetry``, ``contrib.aiohttp``,
the dashboard) imports its library at the top, inside ``try``; on an ``ImportError`` of
that library it calls ``missing_extra``, which raises ``MissingExtraError`` naming the
``pip install`` to run. An ``ImportError`` of anything else is not ours to reword: it is
raised as it was (a bug in the module, a broken install of another package).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import NoReturn

from ._errors import MissingExtraError

__all__ = ["missing_extra"]


def missing_extra(exc: ImportError, *, module: str, extra: str, packages: Collection[str]) -> NoReturn:
    """Raise ``MissingExtraError`` for ``exc`` if it failed on one of ``packages`` (top-level
    import names), else ``exc`` itself."""
    failed = exc.name or ""
    if failed.partition(".")[0] not in packages:
        raise exc
    # A missing package and a present one too old to have a name we import both end here:
    # the extra's version floor fixes either, so both get the same advice, with the cause.
    raise MissingExtraError(
        f'{module} needs {failed}, which cannot be imported ({exc}): pip install "aiojobs_engine[{extra}]"',
        name=exc.name, extra=extra,
    ) from exc
