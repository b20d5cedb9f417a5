"""The Hooks value: which points are set, and how engine-wide and per-job hooks chain."""

from __future__ import annotations

from dataclasses import fields

import pytest

from aiojobs_engine._errors import ConfigurationError
from aiojobs_engine._hooks import HOOK_NAMES, Hooks, hooks_from


def _noop(*_: object) -> None:
    return None


def test_empty_hooks_are_falsy() -> None:
    assert not Hooks()


@pytest.mark.parametrize("point", HOOK_NAMES)
def test_any_single_point_makes_hooks_truthy(point: str) -> None:
    assert Hooks().added(point, _noop)


@pytest.mark.parametrize("point", HOOK_NAMES)
def test_around_attempts_is_every_point_but_on_before_add(point: str) -> None:
    assert Hooks().added(point, _noop).around_attempts is (point != "on_before_add")


def test_every_field_is_a_named_hook_point() -> None:
    assert tuple(f.name for f in fields(Hooks)) == HOOK_NAMES


def test_then_chains_engine_wide_before_per_job() -> None:
    def first(*_: object) -> None: ...
    def second(*_: object) -> None: ...

    chained = hooks_from({"on_success": first}).then(hooks_from({"on_success": second}))
    assert chained.on_success == (first, second)


def test_unknown_point_and_non_callable_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown hook"):
        Hooks().added("on_sucess", _noop)
    with pytest.raises(ConfigurationError, match="must be callable"):
        Hooks().added("on_success", 42)  # type: ignore[arg-type]
