"""What a job may carry: nesting depth and encoded size, refused at enqueue() before anything
is stored, on both backends."""

from __future__ import annotations

import sys

import pytest

from aiojobs_engine import ConfigurationError, Engine, SerializationError
from aiojobs_engine._json import MAX_DEPTH

MIB = 1 << 20


def nested(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = [value]
    return value


async def stored(engine: Engine) -> int:
    return len(await engine.list_jobs())


async def test_a_deeply_nested_argument_is_refused_and_nothing_is_stored(make_engine) -> None:
    engine = make_engine()

    @engine.job()
    async def walk(tree: object, meta_like: object = None) -> None: ...

    async with engine:
        for depth in (MAX_DEPTH, 980, 50_000):  # the args list is one level more than the argument
            with pytest.raises(SerializationError, match=f"nested more than {MAX_DEPTH} levels"):
                await walk.enqueue(nested(depth))
        with pytest.raises(SerializationError, match="meta is nested more than"):
            await walk.options(meta={"deep": nested(MAX_DEPTH)}).enqueue(1)

        def from_deep_in_a_stack(levels: int) -> None:  # what the caller's stack holds must not matter
            if levels:
                from_deep_in_a_stack(levels - 1)
                return
            with pytest.raises(SerializationError):
                walk.new(nested(980))

        from_deep_in_a_stack(sys.getrecursionlimit() - 80)
        assert await stored(engine) == 0
        record = await walk.enqueue(nested(MAX_DEPTH - 1))
        assert record is not None and (await engine.get_job(record.id)).args == [nested(MAX_DEPTH - 1)]


async def test_arguments_over_the_size_limit_are_refused_with_their_size(make_engine) -> None:
    engine = make_engine()

    @engine.job()
    async def upload(blob: str) -> None: ...

    async with engine:
        with pytest.raises(SerializationError, match=r"take 2\.0 MiB \(2,097,16\d bytes\) encoded, over the limit "
                                                     r"of 1\.0 MiB .*max_arguments_bytes"):
            await upload.enqueue("x" * (2 * MIB))
        with pytest.raises(SerializationError, match="over the limit"):  # bytes, not characters: é is two
            await upload.enqueue("é" * (MIB // 2 + 10))
        with pytest.raises(SerializationError, match="over the limit"):  # meta counts too
            await upload.options(meta={"copy": "x" * MIB}).enqueue("small")
        with pytest.raises(SerializationError, match="over the limit"):  # in a bulk enqueue: none is stored
            await engine.enqueue_many([upload.new("fine"), upload.new("x" * (2 * MIB))])
        assert await stored(engine) == 0
        assert await upload.enqueue("x" * (MIB - 100)) is not None


async def test_a_hook_that_makes_a_job_too_large_is_refused_too(make_engine) -> None:
    engine = make_engine()

    @engine.job()
    async def small(n: int) -> None: ...

    engine.add_hook("on_before_add", lambda request: {"attachment": "x" * (2 * MIB)})
    async with engine:
        with pytest.raises(SerializationError, match="over the limit"):
            await small.enqueue(1)
        assert await stored(engine) == 0


async def test_the_size_limit_is_a_setting(make_engine) -> None:
    engine = make_engine(max_arguments_bytes=1000)

    @engine.job()
    async def upload(blob: str) -> None: ...

    async with engine:
        with pytest.raises(SerializationError, match=r"take 1,010 bytes encoded, over the limit of 1,000 bytes"):
            await upload.enqueue("x" * 1000)
        assert await upload.enqueue("x" * 990) is not None
    unlimited = make_engine(max_arguments_bytes=None)
    unlimited.job(upload.definition.target, name="upload")
    async with unlimited:
        assert await unlimited.enqueue("upload", "x" * (2 * MIB)) is not None


@pytest.mark.parametrize("bad", [0, -1, 1.5, "1MiB", True])
def test_a_bad_size_limit_is_refused_when_the_engine_is_made(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="max_arguments_bytes"):
        Engine(max_arguments_bytes=bad)  # type: ignore[arg-type]
