"""Tool-call arguments from a backend: a JSON string that should hold one object.

Open models get this wrong in a few recognisable ways. We repair only where the intent is
unambiguous, and otherwise raise `ToolArgumentsError`: a tool must never run with `{}`
standing in for arguments we could not read.

Repaired:
- empty or blank text, or `null` -> `{}` (the model called the tool without arguments);
- a Markdown code fence around the object;
- the object JSON-encoded twice (a JSON string holding the object);
- trailing text after a complete object (`{"a": 1}}`, `{"a": 1}</tool_call>`);
- the same object repeated (`{"a": 1}{"a": 1}`), which some parsers emit on retries;
- missing closing brackets at the very end, outside any string (`{"a": {"b": 1}`), with a
  dangling comma before them dropped.

Not repaired (raised): a different second object, text cut inside a string, a dangling
key or colon, anything that is not an object (arrays, numbers, bare strings).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_DECODER = json.JSONDecoder()
_CLOSERS = {"{": "}", "[": "]"}


class ToolArgumentsError(ValueError):
    """The arguments are not a JSON object and cannot be repaired unambiguously."""


def parse_tool_arguments(text: str, *, repair: bool = True) -> dict[str, Any]:
    """The arguments as a dict. `repair=False` when the output was cut off (max tokens):
    closing a truncated object would then invent an ending the model never wrote."""
    try:
        value = orjson.loads(text)  # the common case: valid JSON, one object
    except orjson.JSONDecodeError:
        if not repair:
            if not text.strip():
                return {}
            raise ToolArgumentsError(f"invalid JSON: {_clip(text)}") from None
        return _repair(text)
    return _as_object(value, text)


def _as_object(value: object, text: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if value is None:
        return {}
    if isinstance(value, str):
        inner = value.strip()
        if inner.startswith("{"):  # double-encoded: '"{\"a\": 1}"'
            try:
                decoded = orjson.loads(inner)
            except orjson.JSONDecodeError:
                raise ToolArgumentsError(f"a JSON string, not an object: {_clip(text)}") from None
            if isinstance(decoded, dict):
                return decoded
    raise ToolArgumentsError(f"expected a JSON object, got {_kind(value)}: {_clip(text)}")


def _repair(text: str) -> dict[str, Any]:
    stripped = _strip_fence(text.strip())
    if not stripped:
        return {}
    if not stripped.startswith("{"):
        raise ToolArgumentsError(f"not a JSON object: {_clip(text)}")
    try:
        first, end = _DECODER.raw_decode(stripped)
    except json.JSONDecodeError:
        return _close_truncated(stripped, text)
    rest = stripped[end:].strip()
    while rest.startswith("{"):
        try:
            again, used = _DECODER.raw_decode(rest)
        except json.JSONDecodeError:
            break  # a broken repeat is trailing garbage after a complete object
        if again != first:
            raise ToolArgumentsError(f"several different JSON objects: {_clip(text)}")
        rest = rest[used:].strip()
    return _as_object(first, text)


def _strip_fence(text: str) -> str:
    if not text.startswith("```"):
        return text
    body = text[3:]
    newline = body.find("\n")
    # An info string (```json) ends at the first newline; an object may follow directly.
    if newline >= 0 and not body[:newline].strip().startswith("{"):
        body = body[newline + 1 :]
    return body.strip().removesuffix("```").strip()


def _close_truncated(text: str, original: str) -> dict[str, Any]:
    """Append the missing closers when the text stops between values, outside any string."""
    stack: list[str] = []
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in _CLOSERS:
            stack.append(_CLOSERS[char])
        elif char in "}]":
            expected = stack.pop() if stack else None
            if char != expected:
                raise ToolArgumentsError(f"mismatched brackets: {_clip(original)}")
    if in_string or not stack:
        raise ToolArgumentsError(f"invalid JSON: {_clip(original)}")
    head = text.rstrip().removesuffix(",")
    try:
        value = orjson.loads(head + "".join(reversed(stack)))
    except orjson.JSONDecodeError:
        raise ToolArgumentsError(f"invalid JSON: {_clip(original)}") from None
    return _as_object(value, original)


def _kind(value: object) -> str:
    return {list: "an array", bool: "a boolean", str: "a string"}.get(type(value), "a number")


def _clip(text: str, limit: int = 120) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
