"""JSON in and out of storage: the only encoding job data ever gets (never pickle, never eval)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, Final

from ._errors import SerializationError

# What a JSON document can hold, as Python values.
JSONValue = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]

# How deep a stored document may nest (lists and dicts, the document itself counting as one):
# far beyond real arguments, and far below the recursion limit that decoding it again, deep
# in a worker's stack, must stay under.
MAX_DEPTH: Final = 100

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _one_shot_encoder() -> Callable[[object], str]:
    """``_encoder.encode``, without the C encoder it builds at every call (much of its cost on
    a small value; docs/decisions/2026-12-04-json-c-encoder-and-scanner.md): one C encoder,
    kept. It keeps no record of the containers it is in, so a value that contains itself
    ends in RecursionError rather than ValueError."""
    if c_make_encoder is None:  # pragma: no cover  # CPython always has it
        return _encoder.encode
    chunks = c_make_encoder(None, _encoder.default, encode_basestring, None, ":", ",", False, False, False)
    return lambda value: "".join(chunks(value, 0))


_encode: Final = _one_shot_encoder()


def dumps(value: object, what: str, *, check_keys: bool = True) -> str:
    """Encode ``value`` as compact JSON or raise SerializationError naming ``what``.

    Refused, so that both backends store exactly the same values: NaN and infinities (not
    JSON), the NUL character in strings (PostgreSQL's jsonb cannot hold it), and dict keys
    that are not strings (the encoder would turn ``{1: 2}`` into ``{"1": 2}``, so the job
    would get back something else than it was given). ``check_keys=False`` skips that walk
    for the engine's own values whose keys are known to be strings (batches of rows).

    Also refused: a document nested deeper than ``MAX_DEPTH``, whatever the caller's stack
    depth (the encoder's own limit is what is left of Python's recursion limit, so it
    depends on where it is called from; decoding must never hit it either).
    """
    try:
        text = _encode(value)
        text.encode("utf-8")  # lone surrogates (say, from os.fsdecode) cannot be stored
    except UnicodeEncodeError:
        raise SerializationError(f"{what} must not contain lone surrogate characters in its strings") from None
    except RecursionError:
        _check_depth(value, what)  # nested too deeply (or a loop, which is endlessly deep)
        raise SerializationError(f"{what} could not be encoded: the call stack is too deep here "
                                 f"(RecursionError); enqueue from a shallower stack") from None
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"{what} must be JSON-serialisable (dict, list, str, int, float, bool, None): {exc}"
        ) from None
    # Too deep takes two characters a level, and a bracket a level (strings' brackets count
    # too): most documents are ruled out by their length, the rest by a count, before a walk.
    if check_keys and len(text) > 2 * MAX_DEPTH and text.count("[") + text.count("{") > MAX_DEPTH:
        _check_depth(value, what)
    # Without a "{" there is no dict to look at; "{}" is the usual empty kwargs.
    if check_keys and "{" in text and text != "{}":
        _check_keys(value, what)
    if "\\u0000" in text and _NUL.search(text):
        raise SerializationError(f"{what} must not contain the NUL character (\\x00) in its strings")
    return text


_CONTAINERS = (dict, list, tuple)  # what the encoder walks into (it refuses anything else)
_SCALARS = frozenset({str, int, float, bool, type(None)})  # exact types: one set lookup each


def _check_depth(value: object, what: str) -> None:
    """Raise SerializationError if ``value`` nests deeper than ``MAX_DEPTH`` (walked with a
    stack, so that any depth, and a value that contains itself, is measured safely)."""
    stack: list[tuple[object, int]] = [(value, 1)] if isinstance(value, _CONTAINERS) else []
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise SerializationError(f"{what} is nested more than {MAX_DEPTH} levels deep (lists and dicts, "
                                     f"counting the outermost), or contains itself")
        children = item.values() if isinstance(item, dict) else item
        for child in children:  # type: ignore[attr-defined]
            if type(child) not in _SCALARS and isinstance(child, _CONTAINERS):
                stack.append((child, depth + 1))  # noqa: PERF401


def _check_keys(value: object, what: str) -> None:
    """Raise SerializationError if a dict in ``value`` has a key that is not a string.

    Runs after a successful encode, so ``value`` is a finite tree of dicts, lists and tuples
    (the encoder refuses cycles). Walked with a stack rather than recursion: the encoder's
    depth limit is not Python's. Paths are only worked out once a bad key is found.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        children: Iterable[object]
        if isinstance(item, dict):
            for key in item:
                if type(key) is not str and not isinstance(key, str):
                    raise SerializationError(f"{what} must have string keys in its dicts (JSON would turn "
                                             f"them into strings): {_locate(value, item)}")
            children = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue  # a top-level scalar (a string with a "{" in it)
        # A loop: extend(generator) is slower on small dicts (docs/decisions/2026-12-04-json-c-encoder-and-scanner.md).
        for child in children:
            if type(child) not in _SCALARS and isinstance(child, _CONTAINERS):
                stack.append(child)  # noqa: PERF401


def _locate(value: object, bad: dict[object, object]) -> str:
    """Where the dict ``bad`` sits in ``value``, and its first key that is not a string."""
    key = next(k for k in bad if not isinstance(k, str))
    stack: list[tuple[object, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if item is bad:
            return f"key {key!r} ({type(key).__name__}) at {path or 'the top level'}"
        steps: Iterable[tuple[object, object]]
        if isinstance(item, dict):
            steps = item.items()
        elif isinstance(item, list | tuple):
            steps = enumerate(item)
        else:
            continue
        stack.extend((child, f"{path}[{step!r}]") for step, child in steps)
    return f"key {key!r} ({type(key).__name__})"  # pragma: no cover  # bad is always found


def text_for_storage(text: str) -> str:
    """Text from an exception (a message, a traceback), made storable: NUL becomes ``\\x00``
    and a lone surrogate its ``\\udcxx`` escape."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


# \u0000 preceded by an even number of backslashes is an escaped NUL, not a literal "\u0000".
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


_canonical_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=True)


def canonical(text: str) -> str:
    """JSON text (as ``dumps`` made it) with the keys of every object sorted, at every depth:
    equal values give equal text whatever order their dicts were built in."""
    return _canonical_encoder.encode(json.loads(text))


# The C scanner behind json.loads, called directly: json.loads spends most of its time on a
# small document (the usual args, kwargs and results) in the Python layers around it
# (docs/decisions/2026-12-04-json-c-encoder-and-scanner.md).
_scan_once = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def loads(text: str | bytes | None) -> Any:
    """Decode JSON text from storage; ``None`` stays ``None``."""
    if text is None:
        return None
    if type(text) is str:
        try:
            value, end = _scan_once(text, 0)
        except StopIteration:
            pass  # not a document that starts at once (whitespace first, or not JSON at all)
        else:
            if end == len(text):
                return value
    return json.loads(text)  # anything else: decoded, or refused with its error, as json does
