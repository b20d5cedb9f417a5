"""JSON encoding of job data: dict keys that are not strings are refused, never changed."""

from __future__ import annotations

import enum
import json
import sys
from collections import OrderedDict
from pathlib import Path

import pytest

from aiojobs_engine import Engine, Job, JobState, SerializationError
from aiojobs_engine._control import Complete
from aiojobs_engine._json import MAX_DEPTH, dumps, loads
from aiojobs_engine._runtime._outcomes import decision_for_signal
from aiojobs_engine._runtime._pool_worker import run_task


class Color(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(("value", "where"), [
    ({1: 2}, "key 1 (int) at the top level"),
    ([0, {"a": 1, 2.5: "x"}], "key 2.5 (float) at [1]"),
    ({"a": [1, {"b": {None: 1}}]}, "key None (NoneType) at ['a'][1]['b']"),
    (({"a": {True: 1}},), "key True (bool) at [0]['a']"),
    ([OrderedDict({Color.RED: "r"})], "key <Color.RED: 1> (Color) at [0]"),
])
def test_keys_that_are_not_strings_are_refused_and_located(value: object, where: str) -> None:
    with pytest.raises(SerializationError) as caught:
        dumps(value, "the arguments of job 'f'")
    assert isinstance(caught.value, TypeError)
    assert str(caught.value) == (
        "the arguments of job 'f' must have string keys in its dicts (JSON would turn them into strings): " + where
    )


class Name(str):
    pass


@pytest.mark.parametrize("value", [
    [42, "user@example.com", True], {}, [], "a{b", ["{", "}"], {"a": {"b": [{"c": None}]}}, {Name("k"): 1},
    [{"x": 1}, ({"y": (2, 3)},)],
])
def test_string_keys_and_dict_free_values_encode_as_before(value: object) -> None:
    assert loads(dumps(value, "args")) == loads(dumps(value, "args", check_keys=False))


def test_the_engines_own_batches_may_skip_the_walk() -> None:
    assert dumps({1: 2}, "batch", check_keys=False) == '{"1":2}'


def test_other_json_errors_still_say_json() -> None:
    with pytest.raises(SerializationError, match="must be JSON-serialisable"):
        dumps({1: object()}, "args")


def _app_engine(tmp_path: Path) -> Engine:
    return Engine(f"sqlite:///{tmp_path / 'jobs.db'}", poll_interval=0.05)


def test_enqueue_refuses_keys_that_are_not_strings_in_every_argument(tmp_path: Path) -> None:
    engine = _app_engine(tmp_path)

    @engine.job
    async def f(value: object, *, option: object = None) -> None: ...

    @engine.job()
    class C(Job):
        def __init__(self, config: object) -> None:
            self.config = config

        async def run(self) -> None: ...

    with pytest.raises(SerializationError, match=r"the arguments of job 'f' .* key 1 \(int\) at \[0\]"):
        f.new({1: 2})
    with pytest.raises(SerializationError, match=r"the keyword arguments of job 'f' .* at \['option'\]"):
        f.new(1, option={"ok": {3: 4}})
    with pytest.raises(SerializationError, match=r"constructor_args .* key 5 \(int\) at \[0\]\['a'\]"):
        C.options(constructor_args=[{"a": {5: 6}}]).new()
    assert f.new({"1": 2}).args_json == '[{"1":2}]'


def test_a_result_with_keys_that_are_not_strings_fails_for_good() -> None:
    decision = decision_for_signal(Complete({1: 2}))
    assert decision.kind == "failure" and decision.final
    assert isinstance(decision.error, SerializationError) and "string keys" in str(decision.error)


def _returns_int_keys() -> dict[int, int]:
    return {1: 2}


def test_a_process_job_returning_keys_that_are_not_strings_fails_for_good() -> None:
    record = {"id": 1, "queue": "default", "name": "job", "args": [], "kwargs": {}, "constructor_args": [],
              "state": "running", "priority": 50, "attempt": 1, "max_attempts": 5, "timeout": None,
              "inserted_at": "2026-01-01T00:00:00+00:00", "available_at": "2026-01-01T00:00:00+00:00",
              "attempted_at": None, "claimed_by": "e", "meta": {}}
    reply = run_task({"module": __name__, "qualname": "_returns_int_keys", "args": "[]", "kwargs": "{}",
                      "is_class": False, "engine_id": "e", "record": record})
    assert reply["kind"] == "error" and reply["final"] is True
    assert reply["name"] == "SerializationError" and "string keys" in reply["message"]


async def test_a_job_returning_keys_that_are_not_strings_fails_without_retry(tmp_path: Path) -> None:
    engine = _app_engine(tmp_path)

    @engine.job(max_attempts=5)
    async def job() -> dict[int, int]:
        return {1: 2}

    async with engine:
        record = await job.enqueue()
        assert record is not None
        assert await engine.workoff() == 1
        done = await engine.get_job(record.id)
        assert done is not None and done.state is JobState.FAILED and done.attempt == 1
        assert done.result is None and "must have string keys" in done.errors[0]["message"]


@pytest.mark.parametrize("text", ['[5]', '{"a": [1, {"b": null}], "c": "é"}', '"x"', "1e5", " [1] ", "[1]\n",
                                  b"[1, 2]", '{"a":1,"a":2}'])
def test_loads_decodes_as_json_does(text: str | bytes) -> None:
    assert loads(text) == json.loads(text)
    assert type(loads(text)) is type(json.loads(text))


@pytest.mark.parametrize("text", ["", "nope", "[1,", "[5]x", "[5] [6]", "{'a': 1}"])
def test_loads_refuses_what_json_refuses(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    with pytest.raises(json.JSONDecodeError):
        loads(text)


def test_loads_keeps_none() -> None:
    assert loads(None) is None


def test_a_value_that_contains_itself_is_refused() -> None:
    looped: list[object] = [1]
    looped.append(looped)
    with pytest.raises(SerializationError, match="or contains itself"):
        dumps(looped, "args")
    looped_dict: dict[str, object] = {}
    looped_dict["me"] = looped_dict
    with pytest.raises(SerializationError, match="or contains itself"):
        dumps(looped_dict, "meta")
    assert dumps([1, "é", {"a": None}], "args") == '[1,"é",{"a":null}]'  # and the encoder still works after


def nested(depth: int) -> object:
    """A document of ``depth`` levels: lists, with a dict every other level."""
    value: object = 1
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 980, 100_000])
def test_nesting_past_the_limit_is_refused_however_deep(depth: int) -> None:
    with pytest.raises(SerializationError, match=f"args is nested more than {MAX_DEPTH} levels deep"):
        dumps(nested(depth), "args")


def test_nesting_up_to_the_limit_is_accepted_and_decodes_again_deep_in_a_stack() -> None:
    text = dumps(nested(MAX_DEPTH), "args")
    assert text.count("[") + text.count("{") == MAX_DEPTH

    def deep_in_a_stack(levels: int) -> object:  # where a worker may decode it: far down its stack
        return loads(text) if levels == 0 else deep_in_a_stack(levels - 1)

    assert deep_in_a_stack(sys.getrecursionlimit() - 300) == nested(MAX_DEPTH)
    with_brackets_in_strings = ["[" * 500, {"{": "{" * 500}]
    assert loads(dumps(with_brackets_in_strings, "args")) == with_brackets_in_strings  # brackets in text are not depth


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 980])
def test_the_limit_holds_at_any_caller_stack_depth(depth: int) -> None:
    """The encoder's own limit is what is left of the recursion limit: near its end, a value
    within MAX_DEPTH may fail to encode; either way the error is a SerializationError."""
    def deep_in_a_stack(levels: int) -> None:
        if levels:
            deep_in_a_stack(levels - 1)
            return
        with pytest.raises(SerializationError, match=r"nested more than|call stack is too deep"):
            dumps(nested(depth), "args")

    deep_in_a_stack(sys.getrecursionlimit() - 60)


@pytest.mark.parametrize("value", [
    [1e16, 1e-5, -0.0, 10**30, 5e-324, 0.1, 123456789012345.6], "\u2028 é \x01 \"quoted\" \\",
    {"b": 1, "a": [None, True]}, [], {}, 42, "plain",
])
def test_dumps_writes_the_text_json_dumps_writes(value: object) -> None:
    # dumps drives CPython's private C encoder directly: a Python whose encoder changed its
    # signature or output must fail here, not store different JSON.
    assert dumps(value, "args") == json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
