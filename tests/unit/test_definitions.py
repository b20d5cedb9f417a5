"""Argument checks at enqueue: the quick count of positional arguments must agree with a
full bind of the signature, for every kind of parameter."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from aiojobs_engine._definitions import make_definition
from aiojobs_engine._errors import ArgumentsError
from aiojobs_engine._hooks import Hooks
from aiojobs_engine._options import JobOptions


async def plain(a: int, b: int) -> None: ...
async def defaults(a: int, b: int = 1, c: int = 2) -> None: ...
async def star(a: int, *rest: int) -> None: ...
async def keyword_only(a: int, *, k: int) -> None: ...
async def keyword_default(a: int, *, k: int = 0) -> None: ...
async def positional_only(a: int, /, b: int = 0, **extra: int) -> None: ...
async def nothing() -> None: ...


TARGETS = [plain, defaults, star, keyword_only, keyword_default, positional_only, nothing]


def _binds(target: Any, args: tuple[int, ...], kwargs: dict[str, int]) -> bool:
    try:
        inspect.signature(target).bind(*args, **kwargs)
    except TypeError:
        return False
    return True


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.__name__)
def test_the_quick_check_accepts_exactly_what_the_signature_binds(target: Any) -> None:
    definition = make_definition(target, name=None, cpu_bound=False, options=JobOptions(), retry=None,
                                 hooks=Hooks(), requeue_delay=1.0, is_class=False)
    calls: list[tuple[tuple[int, ...], dict[str, int]]] = [(tuple(range(n)), {}) for n in range(5)]
    calls += [((1,), {"k": 2}), ((), {"a": 1}), ((1,), {"b": 2}), ((1,), {"zzz": 3})]
    for args, kwargs in calls:
        if _binds(target, args, kwargs):
            definition.check_arguments(args, kwargs, None)
        else:
            with pytest.raises(ArgumentsError, match="arguments do not fit"):
                definition.check_arguments(args, kwargs, None)


def test_arity() -> None:
    def arity(target: Any) -> Any:
        return make_definition(target, name=None, cpu_bound=False, options=JobOptions(), retry=None,
                               hooks=Hooks(), requeue_delay=1.0, is_class=False).positional_arity

    assert arity(plain) == (2, 2)
    assert arity(defaults) == (1, 3)
    assert arity(star) == (1, float("inf"))
    assert arity(keyword_only) is None
    assert arity(keyword_default) == (1, 1)
    assert arity(positional_only) == (1, 2)
    assert arity(nothing) == (0, 0)
